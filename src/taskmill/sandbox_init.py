"""pid 1 of a sandbox (:mod:`taskmill.sandbox`), as Python source run with ``python -I -S -c``.

The same init runs a PID namespace of :mod:`taskmill.containment` (with ``{}``: nothing
but the init). It makes two additions before the command starts:

* resource limits (``setrlimit``) from its first argument, a JSON object
  ``{"rlimits": {"RLIMIT_DATA": bytes, "RLIMIT_NPROC": n}, ...}``: they apply to the command
  and everything it starts;
* the loopback bridges: for each ``[port, "/path/to/unix.sock"]`` of ``"bridges"`` (the
  model proxy, the network allowlist proxy) it listens on ``127.0.0.1:port`` inside the sandbox's network namespace (bound before the command starts,
  so its first connection cannot be refused) and a forked forwarder pipes each connection to
  the unix socket, both ways, until either side closes (so a streamed response passes
  through as it comes). The forwarder is a process of the namespace: it dies with pid 1.

Then, when its configuration has a ``"started_fd"``, it writes a byte to that fd and closes
it: the sandbox is set up and the command starts (:mod:`taskmill.sandbox_start`).

The command's exit status is pid 1's; SIGTERM/SIGINT/SIGHUP are forwarded to every process
of the namespace (``kill(-1)``), and when the command exits pid 1 exits, so the kernel kills
whatever is left (``setsid`` daemons included).
"""

from __future__ import annotations

INIT = """\
import json, os, resource, signal, socket, sys, threading
conf = json.loads(sys.argv[1])
argv = sys.argv[2:]
STOP = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
def forward(sig, _frame):
    try:
        os.kill(-1, sig)
    except OSError:
        pass
for s in STOP:
    signal.signal(s, forward)
for name, value in conf.get("rlimits", {}).items():
    try:
        resource.setrlimit(getattr(resource, name), (value, value))
    except (OSError, ValueError) as exc:
        sys.stderr.write("taskmill: cannot set %s: %s\\n" % (name, exc))
def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass
def connect_unix(sock, path):
    # a unix socket address holds 107 bytes: a long path (a deep checkout) is reached
    # through /proc/self/fd of its folder
    if len(os.fsencode(path)) < 100:
        sock.connect(path)
        return
    fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        sock.connect("/proc/self/fd/%d/%s" % (fd, os.path.basename(path)))
    finally:
        os.close(fd)
def serve(conn, path):
    up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connect_unix(up, path)
    except OSError:
        conn.close()
        up.close()
        return
    back = threading.Thread(target=pipe, args=(up, conn), daemon=True)
    back.start()
    pipe(conn, up)
    back.join()
    conn.close()
    up.close()
def accept(listener, path):
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            continue
        threading.Thread(target=serve, args=(conn, path), daemon=True).start()
listeners = []
for port, path in conf.get("bridges", []):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(port)))
    listener.listen(128)
    listeners.append((listener, path))
started = conf.get("started_fd")
if started is not None:  # set up: the command starts (nothing forked below keeps the fd)
    try:
        os.write(started, b"1")
        os.close(started)
    except OSError:
        pass
if listeners:
    if os.fork() == 0:
        for s in STOP:
            signal.signal(s, signal.SIG_DFL)
        for listener, path in listeners[1:]:
            threading.Thread(target=accept, args=(listener, path), daemon=True).start()
        accept(*listeners[0])
    for listener, _ in listeners:
        listener.close()
pid = os.fork()
if pid == 0:
    for s in (*STOP, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(s, signal.SIG_DFL)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.stderr.write("taskmill: cannot run %r: %s\\n" % (argv[0], exc))
        os._exit(127 if isinstance(exc, FileNotFoundError) else 126)
while True:
    try:
        child, status = os.wait()
    except ChildProcessError:
        os._exit(1)
    if child == pid:
        code = os.waitstatus_to_exitcode(status)
        os._exit(code if code >= 0 else 128 - code)
"""
