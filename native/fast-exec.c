// fast-exec: a Node-API addon that runs commands with posix_spawn (vfork semantics: no copy of the daemon's page tables), reports their exit, output and errors through the daemon's own event loop, and watches other processes' end through pidfds.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <signal.h>
#include <stdbool.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

// Each run: the child, its pidfd, the pipes still open, what it wrote, and the JS callback to call once all is in.
typedef struct run_s run_t;
typedef struct {
  uv_poll_t poll;
  run_t *run;
  int fd;
  int which; // 0 stdin, 1 stdout, 2 stderr, 3 pidfd
  int open;
} watch_t;

struct run_s {
  napi_env env;
  napi_ref cb;
  pid_t pid;
  watch_t w[4];
  int pending;  // watches not yet closed
  char *buf[3];
  size_t len[3], cap[3];
  size_t max_out;
  const char *input;
  size_t input_len, input_off;
  napi_ref input_ref;
  int status_known, code, sig;
  int streaming; // spawn(): the pipes are the caller's, only the exit is watched
};

static void on_closed(uv_handle_t *h);

static void append(run_t *r, int which, const char *data, size_t n) {
  if (which == 1 && r->len[1] + n > r->max_out) n = r->len[1] < r->max_out ? r->max_out - r->len[1] : 0;
  if (n == 0) return;
  if (r->len[which] + n > r->cap[which]) {
    size_t cap = r->cap[which] ? r->cap[which] : 4096;
    while (cap < r->len[which] + n) cap *= 2;
    char *b = realloc(r->buf[which], cap);
    if (!b) return;
    r->buf[which] = b;
    r->cap[which] = cap;
  }
  memcpy(r->buf[which] + r->len[which], data, n);
  r->len[which] += n;
}

static void stop_watch(watch_t *w) {
  if (!w->open) return;
  w->open = 0;
  uv_poll_stop(&w->poll);
  uv_close((uv_handle_t *)&w->poll, on_closed);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  watch_t *w = (watch_t *)p;
  run_t *r = w->run;
  if (w->which == 3) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    // WNOWAIT: it stays a zombie until finish(), so its pid is no other process's while the caller may still signal it.
    if (syscall(SYS_waitid, P_PIDFD, w->fd, &si, WEXITED | WNOHANG | WNOWAIT, NULL) == 0 && si.si_pid != 0) {
      r->status_known = 1;
      if (si.si_code == CLD_EXITED) { r->code = si.si_status; r->sig = 0; }
      else { r->code = -1; r->sig = si.si_status; }
      stop_watch(w);
    } else if (status < 0) stop_watch(w);
    return;
  }
  if (w->which == 0) {
    while (r->input_off < r->input_len) {
      ssize_t n = write(w->fd, r->input + r->input_off, r->input_len - r->input_off);
      if (n > 0) { r->input_off += (size_t)n; continue; }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      break; // EPIPE: the command does not read its input
    }
    stop_watch(w);
    return;
  }
  char chunk[65536];
  for (;;) {
    ssize_t n = read(w->fd, chunk, sizeof chunk);
    if (n > 0) { append(r, w->which, chunk, (size_t)n); continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN && status >= 0) return;
    break;
  }
  stop_watch(w);
}

static void finish(run_t *r) {
  napi_env env = r->env;
  if (!r->status_known) {
    // The pidfd failed before the exit was seen: the command is ended rather than left behind, and reported killed.
    int st;
    kill(r->pid, SIGKILL);
    while (waitpid(r->pid, &st, 0) < 0 && errno == EINTR) {}
    r->code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r->sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
  }
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, global, args[4], result;
  napi_get_reference_value(env, r->cb, &cb);
  napi_get_global(env, &global);
  napi_create_int32(env, r->code, &args[0]);
  napi_create_int32(env, r->sig, &args[1]);
  void *data;
  size_t nargs = 2;
  if (!r->streaming) {
    napi_create_buffer_copy(env, r->len[1], r->len[1] ? r->buf[1] : "", &data, &args[2]);
    napi_create_buffer_copy(env, r->len[2], r->len[2] ? r->buf[2] : "", &data, &args[3]);
    nargs = 4;
  }
  napi_async_context ctx;
  napi_value name;
  napi_create_string_utf8(env, "fast-exec", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &ctx);
  napi_make_callback(env, ctx, global, cb, nargs, args, &result);
  napi_async_destroy(env, ctx);
  // Reaped only after the callback (which clears the caller's timeout) ran: until then its pid was no other process's.
  int st;
  if (r->status_known) while (waitpid(r->pid, &st, 0) < 0 && errno == EINTR) {}
  napi_delete_reference(env, r->cb);
  if (r->input_ref) napi_delete_reference(env, r->input_ref);
  napi_close_handle_scope(env, scope);
  for (int i = 0; i < 3; i++) free(r->buf[i]);
  free(r);
}

static void on_closed(uv_handle_t *h) {
  watch_t *w = (watch_t *)h;
  run_t *r = w->run;
  close(w->fd);
  if (--r->pending == 0) finish(r);
}

static char **string_array(napi_env env, napi_value arr) {
  uint32_t n = 0;
  napi_get_array_length(env, arr, &n);
  char **out = calloc(n + 1, sizeof(char *));
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    size_t len = 0;
    napi_get_element(env, arr, i, &v);
    napi_get_value_string_utf8(env, v, NULL, 0, &len);
    out[i] = malloc(len + 1);
    napi_get_value_string_utf8(env, v, out[i], len + 1, &len);
  }
  return out;
}

static void free_array(char **a) {
  for (char **p = a; *p; p++) free(*p);
  free(a);
}

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[256];
  napi_value code, m, e;
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_int32(env, err, &code);
  napi_create_error(env, NULL, m, &e);
  napi_set_named_property(env, e, "errno", code);
  napi_throw(env, e);
  return NULL;
}

// run(path, argv[], envp[], cwd|null, input Buffer|null, maxOut, cb(code, signal, stdout, stderr)) -> pid; throws on spawn failure.
// spawn(path, argv[], envp[], cwd|null, cb(code, signal), group) -> [pid, stdin, stdout, stderr]: the pipes are the caller's; group: a process group of its own.
static napi_value start(napi_env env, napi_callback_info info, int streaming) {
  size_t argc = 7;
  napi_value a[7];
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  bool group = false;
  if (streaming) {
    // spawn's arguments: its callback is the fifth, then whether it leads a process group of its own; stdin is a
    // pipe; nothing is buffered.
    napi_valuetype gt;
    napi_typeof(env, a[5], &gt);
    if (argc > 5 && gt == napi_boolean) napi_get_value_bool(env, a[5], &group);
    a[6] = a[4];
    napi_get_boolean(env, 1, &a[4]);
    napi_create_double(env, 0, &a[5]);
  }
  char path[4096], cwd[4096];
  size_t len;
  napi_get_value_string_utf8(env, a[0], path, sizeof path, &len);
  napi_valuetype t;
  napi_typeof(env, a[3], &t);
  int has_cwd = t == napi_string;
  if (has_cwd) napi_get_value_string_utf8(env, a[3], cwd, sizeof cwd, &len);
  napi_typeof(env, a[4], &t);
  int has_input = streaming || t == napi_object;
  double max_out;
  napi_get_value_double(env, a[5], &max_out);

  int p[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};
  for (int i = has_input ? 0 : 1; i < 3; i++) {
    if (pipe2(p[i], O_CLOEXEC) < 0) {
      int e = errno;
      for (int j = 0; j < 3; j++) { if (p[j][0] >= 0) close(p[j][0]); if (p[j][1] >= 0) close(p[j][1]); }
      return throw_errno(env, "pipe2", e);
    }
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (has_input) posix_spawn_file_actions_adddup2(&fa, p[0][0], 0);
  else posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, p[1][1], 1);
  posix_spawn_file_actions_adddup2(&fa, p[2][1], 2);
  if (has_cwd) posix_spawn_file_actions_addchdir_np(&fa, cwd);
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  // Node ignores SIGPIPE and may block signals: the command gets the defaults, as child_process gives them.
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&at, &all);
  posix_spawnattr_setsigmask(&at, &none);
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
  if (group) {
    // Its own process group (its pid): what it starts can be signalled with it as one, never the daemon's group.
    posix_spawnattr_setpgroup(&at, 0);
    flags |= POSIX_SPAWN_SETPGROUP;
  }
  posix_spawnattr_setflags(&at, flags);
  char **argv = string_array(env, a[1]);
  char **envp = string_array(env, a[2]);
  pid_t pid;
  int err = posix_spawn(&pid, path, &fa, &at, argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  free_array(argv);
  free_array(envp);
  // The child's ends are its own now.
  if (p[0][0] >= 0) close(p[0][0]);
  close(p[1][1]);
  close(p[2][1]);
  if (err != 0) {
    for (int i = 0; i < 3; i++) if (p[i][i == 0 ? 1 : 0] >= 0) close(p[i][i == 0 ? 1 : 0]);
    return throw_errno(env, path, err);
  }
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    // Without a pidfd the exit cannot be watched: this kernel is older than 5.3; the caller falls back.
    int e = errno;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    for (int i = 0; i < 3; i++) if (p[i][i == 0 ? 1 : 0] >= 0) close(p[i][i == 0 ? 1 : 0]);
    return throw_errno(env, "pidfd_open", e);
  }
  run_t *r = calloc(1, sizeof *r);
  r->env = env;
  r->pid = pid;
  r->max_out = (size_t)max_out;
  r->streaming = streaming;
  napi_create_reference(env, a[6], 1, &r->cb);
  if (has_input && !streaming) {
    void *data;
    napi_get_buffer_info(env, a[4], &data, &r->input_len);
    r->input = data;
    napi_create_reference(env, a[4], 1, &r->input_ref);
  }
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  int fds[4] = {has_input && !streaming ? p[0][1] : -1, streaming ? -1 : p[1][0], streaming ? -1 : p[2][0], pidfd};
  for (int i = 0; i < 4; i++) {
    if (fds[i] < 0) continue;
    watch_t *w = &r->w[i];
    w->run = r;
    w->fd = fds[i];
    w->which = i;
    w->open = 1;
    if (i < 3) fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    uv_poll_init(loop, &w->poll, fds[i]);
    uv_poll_start(&w->poll, i == 0 ? UV_WRITABLE : UV_READABLE, on_poll);
    r->pending++;
  }
  napi_value out;
  if (!streaming) {
    napi_create_int32(env, pid, &out);
    return out;
  }
  int ret[4] = {pid, p[0][1], p[1][0], p[2][0]};
  napi_create_array_with_length(env, 4, &out);
  for (uint32_t i = 0; i < 4; i++) {
    napi_value v;
    napi_create_int32(env, ret[i], &v);
    napi_set_element(env, out, i, v);
  }
  return out;
}

static napi_value run(napi_env env, napi_callback_info info) { return start(env, info, 0); }
static napi_value spawn_(napi_env env, napi_callback_info info) { return start(env, info, 1); }

// Watches of processes that are not our children (a container's init): a pidfd turns readable when the process ends.
typedef struct exit_watch_s {
  uv_poll_t poll;
  napi_env env;
  napi_ref cb;
  int fd;
  int id;
  int open;
  struct exit_watch_s *next;
} exit_watch_t;

static exit_watch_t *watches;
static int next_watch_id = 1;

static void on_watch_closed(uv_handle_t *h) {
  exit_watch_t *w = (exit_watch_t *)h;
  close(w->fd);
  napi_delete_reference(w->env, w->cb);
  free(w);
}

static void end_watch(exit_watch_t *w) {
  for (exit_watch_t **p = &watches; *p; p = &(*p)->next) if (*p == w) { *p = w->next; break; }
  w->open = 0;
  uv_poll_stop(&w->poll);
  uv_close((uv_handle_t *)&w->poll, on_watch_closed);
}

static void on_watch(uv_poll_t *p, int status, int events) {
  exit_watch_t *w = (exit_watch_t *)p;
  napi_env env = w->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, global, result, name;
  napi_get_reference_value(env, w->cb, &cb);
  napi_get_global(env, &global);
  end_watch(w);
  napi_async_context ctx;
  napi_create_string_utf8(env, "fast-exec-watch", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &ctx);
  napi_make_callback(env, ctx, global, cb, 0, NULL, &result);
  napi_async_destroy(env, ctx);
  napi_close_handle_scope(env, scope);
}

// watch(pid, cb()) -> id: cb once the process ends (at once when it is gone already); throws when it cannot be watched.
static napi_value watch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value a[2];
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  int32_t pid;
  napi_get_value_int32(env, a[0], &pid);
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) return throw_errno(env, "pidfd_open", errno);
  exit_watch_t *w = calloc(1, sizeof *w);
  w->env = env;
  w->fd = fd;
  w->id = next_watch_id++;
  w->open = 1;
  napi_create_reference(env, a[1], 1, &w->cb);
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  uv_poll_init(loop, &w->poll, fd);
  uv_poll_start(&w->poll, UV_READABLE, on_watch);
  // Unref'd: a watch alone does not keep the daemon's event loop alive.
  uv_unref((uv_handle_t *)&w->poll);
  w->next = watches;
  watches = w;
  napi_value out;
  napi_create_int32(env, w->id, &out);
  return out;
}

// unwatch(id): the callback will not be called; no-op for a watch that fired or ended already.
static napi_value unwatch(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value a[1];
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  int32_t id;
  napi_get_value_int32(env, a[0], &id);
  for (exit_watch_t *w = watches; w; w = w->next) if (w->id == id) { end_watch(w); break; }
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "run", NAPI_AUTO_LENGTH, run, NULL, &fn);
  napi_set_named_property(env, exports, "run", fn);
  napi_create_function(env, "spawn", NAPI_AUTO_LENGTH, spawn_, NULL, &fn);
  napi_set_named_property(env, exports, "spawn", fn);
  napi_create_function(env, "watch", NAPI_AUTO_LENGTH, watch, NULL, &fn);
  napi_set_named_property(env, exports, "watch", fn);
  napi_create_function(env, "unwatch", NAPI_AUTO_LENGTH, unwatch, NULL, &fn);
  napi_set_named_property(env, exports, "unwatch", fn);
  return exports;
}
