"use strict";
// The admin page: everything comes from /api/admin with the key from this tab's sessionStorage.
// Text from the server goes into the page as text (never as HTML).
const STORED_KEY = "subrelay-admin-key";
const DAYS = 14;
let adminKey = sessionStorage.getItem(STORED_KEY) || "";
let session = null; // signed in through single sign-on: the cookie does the rest, plus the CSRF token

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "onclick") node.addEventListener("click", value);
    else node[name] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

// Signed in (SSO or the trusted header): the session cookie and its CSRF token; else the admin key.
function authHeaders() {
  const headers = session ? { "x-csrf-token": session.csrf_token || "" } : { "x-admin-key": adminKey };
  headers["x-subrelay-surface"] = "admin-page";
  return headers;
}

async function call(method, path, body) {
  const headers = authHeaders();
  const options = { method, headers, cache: "no-store", credentials: "same-origin" };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error((data.error && data.error.message) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

function askForKey(message) {
  $("main").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  showError(message);
}

async function whoAmI() {
  try {
    const answer = await (await fetch("/auth/session", { cache: "no-store", credentials: "same-origin" })).json();
    $("sso").hidden = !(answer.sign_in && answer.sign_in.oidc);
    if (answer.signed_in && answer.admin) {
      session = answer;
      $("sso").hidden = true;
      $("signed-in-as").textContent = `Signed in as ${answer.identity}`;
      $("sso-sign-out").hidden = false;
    }
  } catch (error) {
    $("sso").hidden = true;
  }
}

function limitsText(user) {
  const parts = [];
  if (user.rpm) parts.push(`${user.rpm.toLocaleString()} req/min`);
  if (user.tpm) parts.push(`${user.tpm.toLocaleString()} tok/min`);
  if (user.daily_tokens) parts.push(`${user.daily_tokens.toLocaleString()} tok/day`);
  parts.push(user.models.length ? `models ${user.models.join(", ")}` : "all models");
  if (user.fallback) parts.push("fallback allowed");
  if (user.max_concurrent) parts.push(`${user.max_concurrent} in flight`);
  if (user.max_effort) parts.push(`effort up to ${user.max_effort}`);
  return parts.join(" · ");
}

function moneyCell(spend) {
  if (!spend || !spend.length) return el("span", { className: "muted", textContent: "no budget" });
  const cell = el("div");
  for (const budget of spend) {
    const used = Math.max(0, Math.min(100, budget.spent_percent));
    const fill = el("div");
    fill.style.width = `${used}%`;
    cell.append(el("div", { className: "budget", dataset: { budget: budget.budget } },
      `${budget.budget}: $${budget.spent_usd} of $${budget.budget_usd}, $${budget.left_usd} left`,
      el("div", { className: used >= 100 ? "bar full" : "bar" }, fill)));
  }
  return cell;
}

function loginCell(login) {
  if (!login) return el("span", { className: "muted", textContent: "not logged in" });
  const cell = el("span", { textContent: `${login.email || "?"} (${login.plan_type || "?"})` });
  cell.append(el("div", { className: "muted account", textContent: `account ${login.account_id || "?"}` }));
  if (login.needs_login) cell.append(el("div", { className: "needs-login", textContent: `needs a new login: ${login.needs_login}` }));
  return cell;
}

function resetText(window) {
  const at = Number(window.resets_at);
  if (!at) return "";
  const hours = (at - Date.now() / 1000) / 3600;
  return hours > 0 ? `, resets in ${hours < 48 ? `${hours.toFixed(1)} h` : `${(hours / 24).toFixed(1)} d`}` : "";
}

function windowsCell(windows) {
  if (!windows.length) return el("span", { className: "muted", textContent: "-" });
  const cell = el("div");
  for (const window of windows) {
    const used = Math.max(0, Math.min(100, window.used_percent));
    const fill = el("div");
    fill.style.width = `${used}%`;
    cell.append(el("div", { className: "window", dataset: { window: window.name } },
      `${window.name}: ${Math.round(window.used_percent)}% used${resetText(window)}`,
      el("div", { className: used >= 95 ? "bar full" : "bar" }, fill)));
  }
  return cell;
}

function actionsCell(user) {
  const path = `/api/admin/users/${encodeURIComponent(user.name)}`;
  const toggle = el("button", {
    className: "secondary", textContent: user.disabled ? "Enable" : "Disable", dataset: { action: "toggle" },
    onclick: () => act(() => call("PATCH", path, { disabled: !user.disabled })),
  });
  const rotate = el("button", {
    className: "secondary", textContent: "Rotate key", dataset: { action: "rotate" },
    onclick: () => act(async () => showKey(await call("POST", `${path}/rotate-key`, {}))),
  });
  const remove = el("button", {
    className: "danger", textContent: "Remove", dataset: { action: "remove" },
    onclick: () => confirm(`Remove ${user.name}, their key and their login?`) && act(() => call("DELETE", path)),
  });
  return el("td", { className: "actions" }, toggle, rotate, remove);
}

function showKey(answer) {
  $("new-key-name").textContent = answer.name;
  $("new-key-value").textContent = answer.key;
  $("new-key").hidden = false;
}

async function act(action) {
  try {
    await action();
    showError("");
    await load();
  } catch (error) {
    showError(error.message);
  }
}

function renderUsers(users) {
  const body = $("users").tBodies[0];
  body.replaceChildren(...users.map((user) => el("tr", { dataset: { user: user.name } },
    el("td", {}, el("b", { textContent: user.name })),
    el("td", {}, el("code", { textContent: user.key_id })),
    el("td", { className: user.disabled ? "disabled" : "enabled", textContent: user.disabled ? "disabled" : "enabled" }),
    el("td", { textContent: limitsText(user) }),
    el("td", {}, loginCell(user.login)),
    el("td", {}, windowsCell(user.plan_windows)),
    el("td", {}, moneyCell(user.spend)),
    actionsCell(user))));
  $("no-users").hidden = users.length > 0;
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function renderUsage(report, names) {
  const today = new Date();
  const days = [];
  for (let back = DAYS - 1; back >= 0; back--) days.push(isoDay(new Date(today.getTime() - back * 86400000)));
  const perDay = new Map(days.map((day) => [day, new Map()]));
  const costs = new Map(days.map((day) => [day, 0]));
  for (const row of report.data) {
    if (!perDay.has(row.day)) continue;
    costs.set(row.day, costs.get(row.day) + row.cost_micros);
    const tokens = row.input_tokens + row.output_tokens;
    const users = perDay.get(row.day);
    users.set(row.user, (users.get(row.user) || 0) + tokens);
    if (!names.includes(row.user)) names.push(row.user);
  }
  const totals = days.map((day) => [...perDay.get(day).values()].reduce((a, b) => a + b, 0));
  const most = Math.max(1, ...totals);
  $("usage-chart").replaceChildren(...days.map((day, index) => {
    const track = el("div", { className: "track" });
    for (const [user, tokens] of perDay.get(day)) {
      const segment = el("div", { className: `seg u${names.indexOf(user) % 6}`, title: `${user}: ${tokens.toLocaleString()} tokens` });
      segment.style.width = `${(tokens / most) * 100}%`;
      track.append(segment);
    }
    const cost = costs.get(day);  // micro-dollars, exact
    const dollars = `$${Math.floor(cost / 1e6)}.${String(Math.round((cost % 1e6) / 1e4)).padStart(2, "0")}`;
    return el("div", { className: "day", dataset: { day, tokens: String(totals[index]), cost: String(cost) } },
      el("span", { className: "label", textContent: day }), track,
      el("span", { className: "total", textContent: `${totals[index].toLocaleString()} · ${dollars}` }));
  }));
  $("usage-legend").replaceChildren(...names.map((name, index) => {
    const swatch = el("i", { className: `u${index % 6}` });
    return el("span", {}, swatch, name);
  }));
  $("usage-range").textContent = `(input + output, ${days[0]} to ${days[days.length - 1]}, UTC)`;
}

async function load() {
  try {
    const since = isoDay(new Date(Date.now() - (DAYS - 1) * 86400000));
    const [users, usage] = await Promise.all([
      call("GET", "/api/admin/users"),
      call("GET", `/api/admin/usage?group_by=user,day&since=${since}`),
    ]);
    $("sign-in").hidden = true;
    $("main").hidden = false;
    $("sign-out").hidden = !adminKey;
    renderUsers(users.data);
    renderUsage(usage, users.data.map((user) => user.name));
    if (typeof loadLedger === "function") await loadLedger();  // ledger.js: the requests view, the audit log
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      sessionStorage.removeItem(STORED_KEY);
      adminKey = "";
      askForKey(error.message);
    } else {
      showError(error.message);
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    adminKey = $("admin-key").value.trim();
    sessionStorage.setItem(STORED_KEY, adminKey);
    $("admin-key").value = "";
    load();
  });
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(STORED_KEY);
    adminKey = "";
    askForKey("");
  });
  $("add-user").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("new-name").value.trim();
    act(async () => {
      showKey(await call("POST", "/api/admin/users", { name }));
      $("new-name").value = "";
    });
  });
  $("set-money").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("money-name").value.trim();
    const budget = $("money-budget").value.trim();
    const cap = $("money-cap").value.trim();
    act(async () => {
      await call("PATCH", `/api/admin/users/${encodeURIComponent(name)}`,
        { budgets: budget ? { month: budget } : null, max_concurrent: cap ? Number(cap) : null });
    });
  });
  $("sso-sign-out").addEventListener("click", async () => {
    await fetch("/auth/logout", { method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": session ? session.csrf_token : "" }, body: "{}" });
    session = null;
    $("sso-sign-out").hidden = true;
    $("signed-in-as").textContent = "";
    askForKey("");
  });
  whoAmI().then(() => {
    if (adminKey || session) load();
    else askForKey("");
  });
});
