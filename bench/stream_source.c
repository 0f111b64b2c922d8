/* A stream source for measuring the client, not the model: an OpenAI-compatible streaming server
 * that answers POST /v1/completions and /v1/chat/completions with server-sent events, one token
 * every GAP microseconds, and records each chunk's send time on CLOCK_MONOTONIC (the clock behind
 * Python's time.perf_counter on Linux). bench/stream_source.py compiles, starts and reads it.
 *
 *   stream_source PORT RECORD_FILE GAP_US TOKENS ALIGN
 *
 * One thread, epoll and a timerfd: the sends are paced by an absolute schedule (k * gap after the
 * request arrived, or on a global grid of gap when ALIGN is 1: every running stream gets its token at
 * the same step, as in a GPU server's batch), so a late wake-up never shifts the later tokens.
 * A request's body may override the token count ("max_tokens") and the gap ("stream_gap_us"), set
 * the first token's delay apart from the gap ("stream_ttft_us", a prefill's time; not aligned) and
 * name itself ("stream_id"). Per finished stream one line goes to RECORD_FILE:
 *   ID REQUEST_NS DUE_NS GAP_NS SEND_NS_1 ... SEND_NS_N
 * where REQUEST_NS is when the whole request had been read, DUE_NS when its first token was due
 * (token k is due at DUE_NS + (k - 1) * GAP_NS) and SEND_NS_k when the k-th token's chunk was
 * handed to send(2).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONN 4096
#define INBUF 65536

typedef struct {
    int fd, active, streaming, chat, heap_at, keep_alive;
    long id, tokens, sent;
    int64_t gap, ttft, next, request_ns, due;
    int64_t *sends;
    char in[INBUF];
    size_t in_len;
    char *out; /* bytes send(2) could not take yet */
    size_t out_len, out_cap;
} conn_t;

static conn_t *conns[MAX_CONN];
static conn_t *heap[MAX_CONN];
static int heap_n, epfd, tfd;
static FILE *record;
static int64_t default_gap, grid_origin;
static long default_tokens;
static int align;
static volatile sig_atomic_t stop;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void heap_swap(int a, int b) {
    conn_t *t = heap[a];
    heap[a] = heap[b];
    heap[b] = t;
    heap[a]->heap_at = a;
    heap[b]->heap_at = b;
}

static void heap_up(int i) {
    while (i > 0 && heap[(i - 1) / 2]->next > heap[i]->next) {
        heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < heap_n && heap[l]->next < heap[m]->next) m = l;
        if (r < heap_n && heap[r]->next < heap[m]->next) m = r;
        if (m == i) return;
        heap_swap(i, m);
        i = m;
    }
}

static void heap_push(conn_t *c) {
    c->heap_at = heap_n;
    heap[heap_n++] = c;
    heap_up(c->heap_at);
}

static void heap_remove(conn_t *c) {
    int i = c->heap_at;
    if (i < 0) return;
    c->heap_at = -1;
    if (i == --heap_n) return;
    heap[i] = heap[heap_n];
    heap[i]->heap_at = i;
    heap_up(i);
    heap_down(heap[i]->heap_at);
}

static void arm_timer(void) {
    struct itimerspec it = {0};
    if (heap_n) {
        int64_t t = heap[0]->next;
        if (t <= 0) t = 1;
        it.it_value.tv_sec = t / 1000000000;
        it.it_value.tv_nsec = t % 1000000000;
    }
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &it, NULL);
}

static void close_conn(conn_t *c) {
    heap_remove(c);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    conns[c->fd] = NULL;
    free(c->sends);
    free(c->out);
    free(c);
}

static void want_out(conn_t *c, int on) {
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* send now, keep what the socket would not take; 0 when the peer is gone */
static int put(conn_t *c, const char *buf, size_t len) {
    if (c->out_len == 0) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN) return 0;
        if (n < 0) n = 0;
        buf += n;
        len -= (size_t)n;
        if (len == 0) return 1;
        want_out(c, 1);
    }
    if (c->out_len + len > c->out_cap) {
        c->out_cap = (c->out_len + len) * 2;
        c->out = realloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, buf, len);
    c->out_len += len;
    return 1;
}

static int flush_out(conn_t *c) {
    ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN;
    memmove(c->out, c->out + n, c->out_len - (size_t)n);
    c->out_len -= (size_t)n;
    if (c->out_len) return 1;
    want_out(c, 0);
    return c->streaming || c->keep_alive;
}

/* one HTTP chunk carrying one server-sent event */
static int put_event(conn_t *c, const char *data, size_t len) {
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "%zx\r\ndata: %.*s\n\n\r\n", len + 8, (int)len, data);
    return put(c, buf, (size_t)n);
}

static long body_number(const char *body, const char *key, long fallback) {
    const char *p = strstr(body, key);
    if (!p) return fallback;
    p += strlen(key);
    while (*p == ' ' || *p == ':' || *p == '"') p++;
    char *end;
    long v = strtol(p, &end, 10);
    return end == p ? fallback : v;
}

static int64_t first_send(conn_t *c) {
    if (c->ttft > 0) return c->request_ns + c->ttft;
    if (!align) return c->request_ns + c->gap;
    int64_t since = c->request_ns - grid_origin;
    return grid_origin + (since / c->gap + 1) * c->gap;
}

static int token(conn_t *c) {
    char data[512];
    int last = c->sent + 1 == c->tokens;
    const char *finish = last ? "\"length\"" : "null";
    int n;
    if (c->chat)
        n = snprintf(data, sizeof data,
                     "{\"id\":\"chatcmpl-source\",\"object\":\"chat.completion.chunk\",\"created\":0,"
                     "\"model\":\"stream-source\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" tok\"},"
                     "\"logprobs\":null,\"finish_reason\":%s}]}", finish);
    else
        n = snprintf(data, sizeof data,
                     "{\"id\":\"cmpl-source\",\"object\":\"text_completion\",\"created\":0,"
                     "\"model\":\"stream-source\",\"choices\":[{\"index\":0,\"text\":\" tok\","
                     "\"logprobs\":null,\"finish_reason\":%s}]}", finish);
    c->sends[c->sent] = now_ns();
    if (!put_event(c, data, (size_t)n)) return 0;
    c->sent++;
    if (!last) return 1;
    n = snprintf(data, sizeof data,
                 "{\"id\":\"cmpl-source\",\"object\":\"%s\",\"created\":0,\"model\":\"stream-source\","
                 "\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":%ld,\"total_tokens\":%ld}}",
                 c->chat ? "chat.completion.chunk" : "text_completion", c->tokens, c->tokens + 1);
    if (!put_event(c, data, (size_t)n) || !put_event(c, "[DONE]", 6) || !put(c, "0\r\n\r\n", 5)) return 0;
    fprintf(record, "%ld %lld %lld %lld", c->id, (long long)c->request_ns, (long long)c->due, (long long)c->gap);
    for (long k = 0; k < c->tokens; k++) fprintf(record, " %lld", (long long)c->sends[k]);
    fputc('\n', record);
    fflush(record);
    c->streaming = 0;
    return 1;
}

/* one whole request is in c->in: answer it; 0 to close */
static int request(conn_t *c, size_t head_len, size_t body_len) {
    char *head = c->in, *body = c->in + head_len;
    char saved = body[body_len];
    body[body_len] = 0;
    int post = strncmp(head, "POST ", 5) == 0;
    c->keep_alive = strcasestr(head, "connection: close") == NULL;
    if (!post) {
        const char *ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}";
        body[body_len] = saved;
        return put(c, ok, strlen(ok));
    }
    c->chat = strstr(head, "/chat/completions") != NULL && strstr(head, "/chat/completions") < strstr(head, "\r\n");
    c->tokens = body_number(body, "\"max_tokens\"", default_tokens);
    if (c->tokens < 1) c->tokens = 1;
    c->gap = (int64_t)body_number(body, "\"stream_gap_us\"", (long)(default_gap / 1000)) * 1000;
    if (c->gap < 1000) c->gap = 1000;
    c->ttft = (int64_t)body_number(body, "\"stream_ttft_us\"", 0) * 1000;
    c->id = body_number(body, "\"stream_id\"", -1);
    body[body_len] = saved;
    free(c->sends);
    c->sends = calloc((size_t)c->tokens, sizeof(int64_t));
    c->sent = 0;
    c->streaming = 1;
    c->request_ns = now_ns();
    const char *hdr = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n";
    if (!put(c, hdr, strlen(hdr))) return 0;
    c->due = first_send(c);
    c->next = c->due;
    heap_push(c);
    return 1;
}

/* read what is there; answer each complete request */
static int readable(conn_t *c) {
    for (;;) {
        if (c->in_len >= INBUF - 1) return 0;
        ssize_t n = recv(c->fd, c->in + c->in_len, INBUF - 1 - c->in_len, 0);
        if (n == 0) return 0;
        if (n < 0) {
            if (errno == EAGAIN) break;
            return 0;
        }
        c->in_len += (size_t)n;
    }
    while (!c->streaming && c->in_len) {
        c->in[c->in_len] = 0;
        char *end = strstr(c->in, "\r\n\r\n");
        if (!end) return 1;
        size_t head_len = (size_t)(end - c->in) + 4;
        char saved = c->in[head_len];
        c->in[head_len] = 0;
        char *cl = strcasestr(c->in, "content-length:");
        c->in[head_len] = saved;
        size_t body_len = cl ? (size_t)strtol(cl + 15, NULL, 10) : 0;
        if (c->in_len < head_len + body_len) return 1;
        if (!request(c, head_len, body_len)) return 0;
        memmove(c->in, c->in + head_len + body_len, c->in_len - head_len - body_len);
        c->in_len -= head_len + body_len;
    }
    return 1;
}

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s PORT RECORD_FILE GAP_US TOKENS ALIGN\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    record = fopen(argv[2], "w");
    if (!record) {
        perror(argv[2]);
        return 1;
    }
    default_gap = atoll(argv[3]) * 1000;
    default_tokens = atol(argv[4]);
    align = atoi(argv[5]);
    grid_origin = now_ns();
    prctl(PR_SET_TIMERSLACK, 1UL); /* the default 50 us slack would blur every send */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr) || listen(ls, 1024)) {
        perror("bind");
        return 1;
    }
    epfd = epoll_create1(0);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, ls, &ev);
    ev.data.ptr = &tfd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);
    printf("listening %d\n", port);
    fflush(stdout);

    struct epoll_event events[256];
    while (!stop) {
        int n = epoll_wait(epfd, events, 256, 200);
        for (int i = 0; i < n; i++) {
            void *p = events[i].data.ptr;
            if (p == NULL) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (fd >= MAX_CONN) {
                        close(fd);
                        continue;
                    }
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    c->heap_at = -1;
                    conns[fd] = c;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &cev);
                }
            } else if (p == &tfd) {
                uint64_t expirations;
                (void)!read(tfd, &expirations, sizeof expirations);
            } else {
                conn_t *c = p;
                int ok = 1;
                if (events[i].events & EPOLLOUT) ok = flush_out(c);
                if (ok && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) ok = readable(c);
                if (!ok) close_conn(c);
            }
        }
        int64_t t = now_ns();
        while (heap_n && heap[0]->next <= t) {
            conn_t *c = heap[0];
            if (!token(c)) {
                close_conn(c);
                continue;
            }
            if (c->streaming) {
                c->next += c->gap;
                heap_down(0);
            } else {
                heap_remove(c);
                if (!c->keep_alive && c->out_len == 0) close_conn(c);
                else if (c->in_len && !readable(c)) close_conn(c);
            }
            t = now_ns();
        }
        arm_timer();
    }
    fflush(record);
    return 0;
}
