"use strict";
// The admin page's requests view and audit log (the request ledger and the admin actions), from
// /api/admin/requests and /api/admin/audit with admin.js's call(); text from the server goes in as text.
const PAGE_SIZE = 25;
let requestCursor = null;
let shownRequests = [];

function requestFilters() {
  const params = new URLSearchParams();
  for (const name of ["person", "model", "provider", "status"]) {
    const value = $(`filter-${name}`).value.trim();
    if (value) params.set(name, value);
  }
  return params;
}

function tokensText(entry) {
  if (entry.input_tokens === null || entry.input_tokens === undefined) return "-";
  const cached = entry.cached_tokens ? ` (${entry.cached_tokens.toLocaleString()} cached)` : "";
  return `${entry.input_tokens.toLocaleString()}${cached} / ${entry.output_tokens.toLocaleString()}`;
}

function costText(cost) {
  return cost === null || cost === undefined ? "-" : `$${Number(cost).toFixed(4)}`;
}

function decisionText(entry) {
  return entry.decision || "first route";
}

function requestRow(entry) {
  const status = `${entry.status}${entry.error ? ` ${entry.error}` : ""}`;
  const row = el("tr", { className: "request", dataset: { seq: String(entry.seq) },
    onclick: () => showRequest(entry) },
    el("td", { textContent: entry.time.slice(0, 19).replace("T", " ") }),
    el("td", {}, el("b", { textContent: entry.person || "-" })),
    el("td", { textContent: entry.model || "-" }),
    el("td", { textContent: entry.route || "-" }),
    el("td", { className: entry.status >= 400 ? "disabled" : "", textContent: status }),
    el("td", { textContent: tokensText(entry) }),
    el("td", { textContent: costText(entry.cost) }),
    el("td", { textContent: entry.ttfb_ms === null ? "-" : `${entry.ttfb_ms} ms` }),
    el("td", { className: entry.decision ? "decision moved" : "decision muted", textContent: decisionText(entry) }));
  return row;
}

function showRequest(entry) {
  const fields = [
    ["time", entry.time], ["person", entry.person], ["door", entry.door],
    ["requested model", entry.model], ["resolved model", entry.upstream_model],
    ["route", entry.route], ["provider", entry.provider], ["routing decision", decisionText(entry)],
    ["status", `${entry.status}${entry.error ? ` (${entry.error})` : ""}`], ["tokens in / out", tokensText(entry)],
    ["reasoning tokens", entry.reasoning_tokens ?? "-"], ["cost", costText(entry.cost)],
    ["first byte", entry.ttfb_ms === null ? "-" : `${entry.ttfb_ms} ms`], ["total", `${entry.total_ms} ms`],
    ["client", entry.client ? `${entry.client} ${entry.client_version || ""}` : "-"],
    ["request id", entry.request_id], ["ledger seq", entry.seq], ["hash", entry.hash],
  ];
  $("request-detail-list").replaceChildren(...fields.flatMap(([name, value]) =>
    [el("dt", { textContent: name }), el("dd", { textContent: String(value ?? "-") })]));
  $("request-detail").hidden = false;
  for (const row of document.querySelectorAll("tr.request")) row.classList.toggle("selected", row.dataset.seq === String(entry.seq));
}

async function loadRequests(more = false) {
  const params = requestFilters();
  params.set("limit", String(PAGE_SIZE));
  if (more && requestCursor) params.set("cursor", requestCursor);
  const page = await call("GET", `/api/admin/requests?${params}`);
  shownRequests = more ? shownRequests.concat(page.data) : page.data;
  requestCursor = page.next_cursor;
  $("requests").tBodies[0].replaceChildren(...shownRequests.map(requestRow));
  $("no-requests").hidden = shownRequests.length > 0;
  $("older-requests").hidden = !requestCursor;
  if (!more) $("request-detail").hidden = true;
}

async function download(log, format) {
  const params = log === "requests" ? requestFilters() : new URLSearchParams();
  params.set("format", format);
  const response = await fetch(`/api/admin/${log}?${params}`, { headers: authHeaders(), cache: "no-store",
    credentials: "same-origin" });
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  const link = el("a", { href: URL.createObjectURL(await response.blob()), download: `subrelay-${log}.${format}` });
  document.body.append(link);
  link.click();
  link.remove();
}

async function loadAudit() {
  const page = await call("GET", `/api/admin/audit?limit=${PAGE_SIZE}`);
  $("audit").tBodies[0].replaceChildren(...page.data.map((entry) => el("tr", { dataset: { action: entry.action } },
    el("td", { textContent: entry.time.slice(0, 19).replace("T", " ") }),
    el("td", { textContent: entry.actor }),
    el("td", { textContent: entry.via }),
    el("td", {}, el("code", { textContent: entry.action })),
    el("td", { textContent: entry.target || "-" }),
    el("td", { textContent: entry.details || "" }))));
  $("no-audit").hidden = page.data.length > 0;
}

async function loadLedger() {
  await Promise.all([loadRequests(), loadAudit()]);
}

async function attempt(action) {  // like admin.js's act(), without reloading the whole page
  try {
    await action();
    showError("");
  } catch (error) {
    showError(error.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("request-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    attempt(() => loadRequests());
  });
  $("older-requests").addEventListener("click", () => attempt(() => loadRequests(true)));
  $("export-csv").addEventListener("click", () => attempt(() => download("requests", "csv")));
  $("export-jsonl").addEventListener("click", () => attempt(() => download("requests", "jsonl")));
  $("export-audit").addEventListener("click", () => attempt(() => download("audit", "csv")));
});
