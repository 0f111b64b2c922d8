"""Road-network queries: Dijkstra, Bellman-Ford, hop counts, components and a spanning tree.

The network is read from a whitespace-separated edge list (`town town distance`, `#` starts a
comment). Roads are two-way unless added with `directed=True`, which the toll-credit example
uses to model one-way edges with negative weights for Bellman-Ford.
"""
import heapq
from collections import deque

INFINITY = float("inf")


class Graph:
    def __init__(self):
        self.adjacency = {}

    def add_node(self, name):
        if name not in self.adjacency:
            self.adjacency[name] = {}

    def add_edge(self, a, b, weight, directed=False):
        self.add_node(a)
        self.add_node(b)
        if b not in self.adjacency[a] or weight < self.adjacency[a][b]:
            self.adjacency[a][b] = weight
        if not directed:
            self.add_edge(b, a, weight, directed=True)

    def nodes(self):
        return sorted(self.adjacency)

    def edges(self):
        result = []
        for a in self.nodes():
            for b in sorted(self.adjacency[a]):
                result.append((a, b, self.adjacency[a][b]))
        return result

    def neighbors(self, name):
        return sorted(self.adjacency[name].items())


def load_graph(path):
    graph = Graph()
    with open(path) as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 3:
                raise ValueError("line %d: expected 'town town distance'" % number)
            graph.add_edge(parts[0], parts[1], float(parts[2]))
    return graph


def dijkstra(graph, source):
    dist = {node: INFINITY for node in graph.nodes()}
    prev = {}
    dist[source] = 0
    heap = [(0, source)]
    visited = set()
    while heap:
        d, node = heapq.heappop(heap)
        if node in visited:
            continue
        visited.add(node)
        for neighbor, weight in graph.neighbors(node):
            candidate = d + weight
            if candidate < dist[neighbor]:
                dist[neighbor] = candidate
                prev[neighbor] = node
                heapq.heappush(heap, (candidate, neighbor))
    return dist, prev


def build_path(prev, source, target):
    if target != source and target not in prev:
        return []
    path = [target]
    while path[-1] != source:
        path.append(prev[path[-1]])
    path.reverse()
    return path


def bellman_ford(graph, source):
    dist = {node: INFINITY for node in graph.nodes()}
    dist[source] = 0
    edges = graph.edges()
    for _ in range(len(dist) - 1):
        changed = False
        for a, b, weight in edges:
            if dist[a] + weight < dist[b]:
                dist[b] = dist[a] + weight
                changed = True
        if not changed:
            break
    for a, b, weight in edges:
        if dist[a] + weight < dist[b]:
            raise ValueError("negative cycle reachable from %s" % source)
    return dist


def hop_counts(graph, source):
    hops = {source: 0}
    queue = deque([source])
    while queue:
        node = queue.popleft()
        for neighbor, _ in graph.neighbors(node):
            if neighbor not in hops:
                hops[neighbor] = hops[node] + 1
                queue.append(neighbor)
    return hops


def components(graph):
    seen = set()
    groups = []
    for node in graph.nodes():
        if node in seen:
            continue
        group = sorted(hop_counts(graph, node))
        seen.update(group)
        groups.append(group)
    return groups


def find(parent, node):
    while parent[node] != node:
        parent[node] = parent[parent[node]]
        node = parent[node]
    return node


def spanning_forest(graph):
    parent = {node: node for node in graph.nodes()}
    chosen = []
    candidates = sorted((w, a, b) for a, b, w in graph.edges() if a < b)
    for weight, a, b in candidates:
        root_a, root_b = find(parent, a), find(parent, b)
        if root_a != root_b:
            parent[root_a] = root_b
            chosen.append((a, b, weight))
    return chosen


def describe_route(graph, source, target):
    dist, prev = dijkstra(graph, source)
    path = build_path(prev, source, target)
    if not path:
        return "%s -> %s: unreachable" % (source, target)
    return "%s -> %s: %g km via %s" % (source, target, dist[target], " > ".join(path))
