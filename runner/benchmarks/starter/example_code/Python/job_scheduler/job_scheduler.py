"""Schedules a batch of build jobs under a dependency graph and a shared CPU budget.

Jobs come from a CSV file (id, duration, priority, cpus, depends_on). The scheduler releases
a job once all of its dependencies have finished, starts the highest-priority ready jobs that
fit in the free CPUs, and advances a simulated clock from one completion event to the next.
"""
import csv
import heapq
from collections import defaultdict, deque


class Job:
    def __init__(self, job_id, duration, priority, cpus, depends_on):
        self.job_id = job_id
        self.duration = duration
        self.priority = priority
        self.cpus = cpus
        self.depends_on = depends_on

    def __repr__(self):
        return "Job(%s, %d, p%d, %dcpu)" % (self.job_id, self.duration, self.priority, self.cpus)


class SchedulingError(Exception):
    pass


def load_jobs(path):
    jobs = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            deps = [dep.strip() for dep in row["depends_on"].split(";") if dep.strip()]
            job = Job(row["id"], int(row["duration"]), int(row["priority"]), int(row["cpus"]), deps)
            if job.job_id in jobs:
                raise SchedulingError("duplicate job id %s" % job.job_id)
            jobs[job.job_id] = job
    return jobs


def validate(jobs, capacity):
    for job_id in sorted(jobs):
        job = jobs[job_id]
        for dep in job.depends_on:
            if dep not in jobs:
                raise SchedulingError("%s depends on unknown job %s" % (job_id, dep))
        if job.cpus > capacity:
            raise SchedulingError("%s needs %d cpus but only %d exist" % (job_id, job.cpus, capacity))
        if job.duration <= 0:
            raise SchedulingError("%s has a non-positive duration" % job_id)


def topological_order(jobs):
    indegree = {job_id: 0 for job_id in jobs}
    children = defaultdict(list)
    for job in jobs.values():
        for dep in job.depends_on:
            indegree[job.job_id] += 1
            children[dep].append(job.job_id)
    queue = deque(sorted(job_id for job_id, degree in indegree.items() if degree == 0))
    order = []
    while queue:
        current = queue.popleft()
        order.append(current)
        for child in sorted(children[current]):
            indegree[child] -= 1
            if indegree[child] == 0:
                queue.append(child)
    if len(order) != len(jobs):
        stuck = sorted(job_id for job_id, degree in indegree.items() if degree > 0)
        raise SchedulingError("dependency cycle among " + ", ".join(stuck))
    return order


def critical_path(jobs):
    finish = {}
    via = {}
    for job_id in topological_order(jobs):
        job = jobs[job_id]
        start = 0
        for dep in job.depends_on:
            if finish[dep] > start:
                start = finish[dep]
                via[job_id] = dep
        finish[job_id] = start + job.duration
    last = max(sorted(finish), key=lambda job_id: finish[job_id])
    path = [last]
    while path[-1] in via:
        path.append(via[path[-1]])
    return finish[last], list(reversed(path))


def simulate(jobs, capacity, log):
    validate(jobs, capacity)
    topological_order(jobs)
    waiting = {job_id: set(job.depends_on) for job_id, job in jobs.items()}
    ready = []
    running = []
    free = capacity
    clock = 0
    started = {}
    finished = {}
    for job_id in sorted(waiting):
        if not waiting[job_id]:
            heapq.heappush(ready, (-jobs[job_id].priority, job_id))
    while ready or running:
        deferred = []
        while ready:
            neg_priority, job_id = heapq.heappop(ready)
            job = jobs[job_id]
            if job.cpus <= free:
                free -= job.cpus
                started[job_id] = clock
                heapq.heappush(running, (clock + job.duration, job_id))
                log.append("t=%d start %s (free=%d)" % (clock, job_id, free))
            else:
                deferred.append((neg_priority, job_id))
        for item in deferred:
            heapq.heappush(ready, item)
        end_time, job_id = heapq.heappop(running)
        clock = end_time
        free += jobs[job_id].cpus
        finished[job_id] = clock
        log.append("t=%d done %s" % (clock, job_id))
        for other in sorted(waiting):
            if job_id in waiting[other]:
                waiting[other].discard(job_id)
                if not waiting[other]:
                    heapq.heappush(ready, (-jobs[other].priority, other))
    return started, finished


def utilization(jobs, started, finished, capacity):
    makespan = max(finished.values())
    busy = sum(jobs[job_id].cpus * (finished[job_id] - started[job_id]) for job_id in finished)
    return makespan, busy / (capacity * makespan)


def queue_delays(jobs, started, finished):
    delays = {}
    for job_id in sorted(jobs):
        released = max([finished[dep] for dep in jobs[job_id].depends_on], default=0)
        delays[job_id] = started[job_id] - released
    return delays


def report(jobs, capacity):
    log = []
    started, finished = simulate(jobs, capacity, log)
    for line in log:
        print(line)
    makespan, ratio = utilization(jobs, started, finished, capacity)
    length, path = critical_path(jobs)
    print("makespan=%d utilization=%.3f" % (makespan, ratio))
    print("critical path %d: %s" % (length, " -> ".join(path)))
    delays = queue_delays(jobs, started, finished)
    delayed = [job_id for job_id in sorted(delays) if delays[job_id] > 0]
    print("delayed by the cpu limit: %s" % (", ".join(delayed) if delayed else "none"))
    return makespan
