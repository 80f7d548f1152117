"""The package import graph of proxy/ and adapters/ (module-level imports), and any module cycle.

    python benchmarks/probes/import_graph.py      # exit 1 on a cycle
"""
import ast
import collections
import os
import sys

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
mods = {}
for top in ("proxy", "adapters"):
    for d, _, fs in os.walk(top):
        for f in fs:
            if f.endswith(".py"):
                p = os.path.join(d, f); m = p[:-3].replace("/", ".")
                if m.endswith(".__init__"): m = m[:-9]
                mods[m] = p
def pkg(m):
    parts = m.split(".")
    if parts[0] == "adapters": return "adapters"
    if len(parts) == 1: return "proxy"
    if parts[1] in ("doors", "state") and len(parts) > 3: return ".".join(parts[1:3])
    if parts[1] in ("doors", "state") and len(parts) == 3 and mods.get(m, "").endswith("__init__.py"): return ".".join(parts[1:3])
    return parts[1] if not mods[m].endswith("__init__.py") or len(parts) > 2 else parts[1]
graph = collections.defaultdict(set); pkgdeps = collections.defaultdict(set)
for m, p in mods.items():
    tree = ast.parse(open(p).read())
    for node in tree.body:  # module-level only
        targets = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [node.module + "." + a.name for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.If):  # TYPE_CHECKING skipped
            continue
        for t in targets:
            if t in mods and t != m:
                graph[m].add(t); 
                a, b = pkg(m), pkg(t)
                if a != b: pkgdeps[a].add(b)
# cycles
sys.setrecursionlimit(10000)
color = {}; cycles = []
def dfs(u, stack):
    color[u] = 1; stack.append(u)
    for v in graph[u]:
        if color.get(v) == 1: cycles.append(stack[stack.index(v):] + [v])
        elif not color.get(v): dfs(v, stack)
    stack.pop(); color[u] = 2
for m in mods:
    if not color.get(m): dfs(m, [])
print("module cycles:", cycles[:5] or "none")
for a in sorted(pkgdeps): print(a, "->", ", ".join(sorted(pkgdeps[a])))
sys.exit(1 if cycles else 0)
