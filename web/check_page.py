"""Opens the built page in headless Chromium (WebGPU; SwiftShader where there is no GPU) through
ChromeDriver, waits until it says it is ready, checks what it printed and that both canvases are
painted, and saves a screenshot. Python's standard library only (CI runs it after the browser
tests; README.md "In the browser").

    python3 -m http.server -d web 8000 &
    python3 web/check_page.py http://localhost:8000/ page.png [--bench]
"""
import base64
import json
import subprocess
import sys
import time
import urllib.request

URL, SHOT = sys.argv[1], sys.argv[2]
PORT = 9517
ARGS = ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan",
        "--disable-dev-shm-usage", "--window-size=1400,1300"]
PAINTED = """
const c = document.getElementById(arguments[0]);
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0;
for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250)) n++;
return n;
"""

driver = subprocess.Popen(["chromedriver", f"--port={PORT}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def call(method, path, body=None):
    r = urllib.request.Request(f"http://localhost:{PORT}{path}", method=method,
                               data=None if body is None else json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(r, timeout=300).read())["value"]


try:
    for _ in range(50):
        try:
            call("GET", "/status")
            break
        except OSError:
            time.sleep(0.1)
    caps = {"goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": ARGS}}
    sid = call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})["sessionId"]

    def js(script, *args):
        return call("POST", f"/session/{sid}/execute/sync", {"script": script, "args": list(args)})

    def text(i):
        return js(f"return document.getElementById('{i}').textContent")

    call("POST", f"/session/{sid}/url", {"url": URL})
    t0 = time.time()
    while time.time() - t0 < 240 and not text("status").startswith(("ready", "error")):
        time.sleep(0.25)
    took = time.time() - t0
    for i in ["status", "adapter", "accuracy", "reversed"]:
        print(f"{i}: {text(i)}")
    painted = {c: js(PAINTED, c) for c in ["pe", "attn"]}
    print(f"painted pixels: {painted}; ready after {took:.1f} s")
    ok = (text("status").startswith("ready")
          and text("accuracy") == "accuracy: 4096/4096 tokens (100.00%), 256/256 sequences fully reversed"
          and painted["pe"] > 128 * 100 // 2 and painted["attn"] >= 16)
    if "--bench" in sys.argv:
        call("POST", f"/session/{sid}/timeouts", {"script": 300000})
        r = call("POST", f"/session/{sid}/execute/async", {"script": """
            const done = arguments[arguments.length - 1];
            import('./pkg/wgnn_web.js').then(m => m.bench(7)).then(done, e => done('error ' + e));
        """, "args": []})
        print(f"bench: {r}")
    open(SHOT, "wb").write(base64.b64decode(call("GET", f"/session/{sid}/screenshot")))
    call("DELETE", f"/session/{sid}")
    print("page: ok" if ok else "page: NOT as expected")
    sys.exit(0 if ok else 1)
finally:
    driver.kill()
