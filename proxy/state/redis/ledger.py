"""The ledger on Redis, for replicas: one stream per log (``{sr}:ledger:requests``, ``{sr}:ledger:audit``).

Why a stream: it is an append-only log with time-ordered ids (a cursor for free), ``XADD … MAXLEN ~`` keeps
it bounded by size on every append and ``XTRIM MINID ~`` by age, and the replicas already share this Redis,
so the ledger needs no second database to run, back up and secure. What it gives up: filters are a scan
(bounded per page, :data:`SCAN_PER_PAGE`), fine for an admin's drill-down over a bounded log; a team that
wants SQL over years of history exports JSON Lines into its own warehouse.

Stream ids are the entries' own times (milliseconds, never going back), so ``MINID`` trims by the
requests' age. The chain across replicas: each append is one Lua script that checks the log's head (``seq hash``) is the
one the entries were linked to, and then adds them and moves the head, or answers the newer head; the
replica links its batch again and retries (a few times; then the batch waits for the next flush). Hashing
stays in Python (Redis' Lua has no SHA-256), so the script only compares and appends.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from redis.asyncio import Redis

from proxy.observe.chain import FIELDS, GENESIS, linked
from proxy.state.ledger import LedgerQuery, LedgerStore, Page, Retention, status_range
from proxy.state.redis.connection import RedisOptions, bounded, create_client
from proxy.state.team import StoreError

SCAN_PER_PAGE = 20_000  # entries one page may read past while filtering; then it returns a cursor to go on
_ATTEMPTS = 5
APPEND = """
local head = redis.call('GET', KEYS[2]) or ''
if head ~= ARGV[1] then return {0, head} end
local maxlen = tonumber(ARGV[3])
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local floor = 0
if #last > 0 then floor = tonumber(string.match(last[1][1], '^(%d+)')) end
for i = 4, #ARGV, 6 do
  local ms = math.max(tonumber(ARGV[i+5]), floor)
  floor = ms
  local id = string.format('%d-*', ms)
  if maxlen > 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, id, 's', ARGV[i], 'p', ARGV[i+1], 'h', ARGV[i+2],
               'c', ARGV[i+3], 't', ARGV[i+4])
  else
    redis.call('XADD', KEYS[1], id, 's', ARGV[i], 'p', ARGV[i+1], 'h', ARGV[i+2], 'c', ARGV[i+3], 't', ARGV[i+4])
  end
end
redis.call('SET', KEYS[2], ARGV[2])
return {1, ARGV[2]}
"""


class RedisLedgerStore(LedgerStore):
    def __init__(self, client: Redis, options: RedisOptions | None = None, *, max_entries: dict[str, int] | None = None):
        self.options = options or RedisOptions()
        self._redis = client
        self._timeout = self.options.timeout
        self._p = "{" + self.options.prefix + "}:ledger:"
        self._append = client.register_script(APPEND)
        self.max_entries = max_entries or {}  # per log: the MAXLEN ~ every append keeps it under

    @classmethod
    def from_url(cls, url: str, env: Mapping[str, str], **kwargs) -> "RedisLedgerStore":
        options = RedisOptions.from_env(env)
        return cls(create_client(url, options), options, **kwargs)

    async def append(self, log: str, entries: list[dict], epoch: list[float]) -> None:
        if not entries:
            return
        raw = await bounded(self._redis.get(self._p + log + ":head"), self._timeout)
        head = raw.decode() if raw else ""
        for _ in range(_ATTEMPTS):
            seq, last = _parse_head(head)
            (new_seq, new_hash), values = linked(log, seq, last, entries)
            args: list = [head, f"{new_seq} {new_hash}", self.max_entries.get(log, 0)]
            for entry, ts, fields in zip(entries, epoch, values):
                args += [entry["seq"], entry["prev"], entry["hash"], orjson.dumps(fields), repr(ts), int(ts * 1000)]
            done, current = await bounded(self._append(keys=[self._p + log, self._p + log + ":head"], args=args),
                                          self._timeout)
            if done:
                return
            head = current.decode() if isinstance(current, bytes) else str(current or "")
        raise StoreError("the ledger's head kept moving (other replicas appending); the batch waits for the next try")

    async def prune(self, log: str, retention: Retention, now: float) -> int:
        removed = 0
        if retention.days is not None:
            cutoff = int((now - retention.days * 86400) * 1000)
            removed += await bounded(self._redis.xtrim(self._p + log, minid=cutoff, approximate=True), self._timeout)
        if retention.max_entries is not None:
            removed += await bounded(self._redis.xtrim(self._p + log, maxlen=retention.max_entries, approximate=True),
                                     self._timeout)
        return removed

    async def head(self, log: str) -> tuple[int, str, int, str]:
        raw = await bounded(self._redis.get(self._p + log + ":head"), self._timeout)
        seq, last = _parse_head(raw.decode() if raw else "")
        first = await bounded(self._redis.xrange(self._p + log, "-", "+", count=1), self._timeout)
        if first:
            fields = first[0][1]
            return seq, last, int(fields[b"s"]) - 1, fields[b"p"].decode()
        return seq, last, seq, last

    async def chain(self, log: str, cursor: str | None = None, *, batch: int = 5000) -> tuple[list[dict], str | None]:
        start = "(" + cursor if cursor else "-"
        rows = await bounded(self._redis.xrange(self._p + log, start, "+", count=batch), self._timeout)
        entries = [_entry(log, fields) for _, fields in rows]
        return entries, rows[-1][0].decode() if len(rows) == batch else None

    async def page(self, log: str, query: LedgerQuery) -> Page:
        end = "(" + query.before if query.before else "+"
        found: list[dict] = []
        scanned, last_id = 0, ""

        low, high = status_range(query.status) if query.status is not None else (0, 0)
        while scanned < SCAN_PER_PAGE:
            rows = await bounded(self._redis.xrevrange(self._p + log, end, "-", count=500), self._timeout)
            if not rows:
                return Page(found, None)
            for stream_id, fields in rows:
                scanned += 1
                ts = float(fields[b"t"])
                if query.since is not None and ts < query.since:
                    continue
                if query.until is not None and ts >= query.until:
                    continue
                entry = _entry(log, fields)
                if _matches(log, entry, query, low, high):
                    if len(found) == query.limit:
                        return Page(found, last_id)
                    found.append(entry)
                    last_id = stream_id.decode()
            end = "(" + rows[-1][0].decode()
        return Page(found, end[1:])

    async def ping(self) -> bool:
        return bool(await bounded(self._redis.ping(), self._timeout))

    async def close(self) -> None:
        await self._redis.aclose()


def _parse_head(head: str) -> tuple[int, str]:
    if not head:
        return 0, GENESIS
    seq, _, digest = head.partition(" ")
    return int(seq), digest


def _entry(log: str, fields: dict) -> dict:
    entry = dict(zip(FIELDS[log], orjson.loads(fields[b"c"])))
    entry["seq"], entry["prev"], entry["hash"] = int(fields[b"s"]), fields[b"p"].decode(), fields[b"h"].decode()
    return entry


def _matches(log: str, entry: dict, query: LedgerQuery, low: int, high: int) -> bool:
    if log == "requests":
        if query.person is not None and entry.get("person") != query.person:
            return False
        if query.model is not None and query.model not in (entry.get("model"), entry.get("upstream_model")):
            return False
        if query.provider is not None and entry.get("provider") != query.provider:
            return False
        if query.status is not None and not low <= int(entry.get("status") or 0) <= high:
            return False
        return True
    if query.person is not None and entry.get("actor") != query.person:
        return False
    if query.action is not None and entry.get("action") != query.action:
        return False
    return query.target is None or entry.get("target") == query.target
