"""Peak RSS of `subrelay serve` while 4 clients each try to send a 100 MB body (declared and chunked)."""
import os, socket, subprocess, sys, threading, time
port = 18787
p = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port)], cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]),
                     env={**os.environ, "CODEX_AUTH_PATH": "/nonexistent/auth.json", "SUBRELAY_LOG_LEVEL": "warning"},
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(2.5)
def hwm():
    for line in open(f"/proc/{p.pid}/status"):
        if line.startswith(("VmHWM", "VmRSS")): print("  ", line.strip())
print("before:"); hwm()
results = []
def send(chunked):
    s = socket.create_connection(("127.0.0.1", port))
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"Content-Length: 104857600\r\n\r\n"
    s.sendall(head)
    sent = 0
    block = b"x" * 65536
    try:
        while sent < 100 * 1024 * 1024:
            s.sendall((b"10000\r\n" + block + b"\r\n") if chunked else block)
            sent += 65536
    except OSError:
        pass
    s.settimeout(5)
    try: results.append((chunked, sent, s.recv(200).split(b"\r\n")[0]))
    except OSError as e: results.append((chunked, sent, repr(e)))
threads = [threading.Thread(target=send, args=(i % 2 == 1,)) for i in range(4)]
[t.start() for t in threads]; [t.join() for t in threads]
for r in results: print("  chunked=%s sent_before_refusal=%.1f MB answer=%s" % (r[0], r[1] / 2**20, r[2]))
print("after:"); hwm()
p.terminate(); p.wait()
