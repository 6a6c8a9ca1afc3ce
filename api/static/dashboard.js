// goodfaith operations dashboard. No data is in the page: every figure comes from the ops
// endpoints, fetched with the key the user gives once (kept in sessionStorage for this tab).
"use strict";

const KEY = "goodfaith.key";
const params = new URLSearchParams(location.search);
const REFRESH_S = Math.max(1, Number(params.get("refresh") || 15));
let timer = null;

const $ = (sel) => document.querySelector(sel);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function local(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
}

function hoursLeft(h) {
  if (h === null || h === undefined) return "—";
  const sign = h < 0 ? "−" : "";
  const abs = Math.abs(h);
  return abs >= 48 ? `${sign}${(abs / 24).toFixed(1)} d` : `${sign}${abs.toFixed(1)} h`;
}

class AuthError extends Error {}

async function api(path, options = {}) {
  const key = sessionStorage.getItem(KEY);
  if (!key) throw new AuthError("no key");
  const response = await fetch(path, {
    ...options,
    headers: { ...(options.headers || {}), Authorization: `Bearer ${key}`, Accept: "application/json" },
  });
  if (response.status === 401 || response.status === 403) {
    let detail = "";
    try { detail = (await response.json()).detail || ""; } catch (e) { /* not JSON */ }
    throw new AuthError(`${response.status}: ${detail || "refused"}`);
  }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function show(id) {
  for (const section of ["#key-panel", "#list-view", "#case-view"]) $(section).hidden = section !== id;
  $("#sign-out").hidden = id === "#key-panel";
}

function askForKey(message) {
  sessionStorage.removeItem(KEY);
  $("#key-error").textContent = message || "";
  show("#key-panel");
  $("#key-input").focus();
}

// --- the list of cases ----------------------------------------------------------------------

// the list shows external reviews unless asked: a campaign's requests would bury them
const KIND_NOTE = {
  review: "external reviews",
  campaign: "campaign cases",
  all: "cases (reviews and campaign requests)",
};

async function renderList() {
  const kind = $("#f-kind").value || "review";
  const q = new URLSearchParams({ limit: "500", kind });
  if ($("#f-status").value) q.set("status", $("#f-status").value);
  if ($("#f-review").value) q.set("review_type", $("#f-review").value);
  if ($("#f-agency").value.trim()) q.set("agency_id", $("#f-agency").value.trim());
  const [page, queues, review, campaigns] = await Promise.all([
    api(`/v1/cases?${q}`), api("/v1/queues"), api("/v1/review"), api("/v1/campaigns?limit=50"),
  ]);
  show("#list-view");
  const counts = $("#counts");
  counts.replaceChildren(...Object.entries(page.counts).map(([k, n]) => el("span", `${k}: ${n}`)));
  const search = $("#f-search").value.trim().toLowerCase();
  const riskOnly = $("#f-risk").checked;
  const rows = page.active
    .filter((c) => !search || c.notification_id.toLowerCase().includes(search))
    .filter((c) => !riskOnly || c.at_risk.length > 0);
  const body = $("#cases tbody");
  body.replaceChildren(...rows.map(caseRow));
  $("#cases-note").textContent =
    `${rows.length} shown of ${page.total} watched ${KIND_NOTE[kind]}, earliest deadline first` +
    (page.total > page.active.length ? ` (first ${page.active.length})` : "");
  renderQueues(queues);
  renderReview(review);
  renderCampaigns(campaigns);
}

// --- campaigns (bulk record retrieval, the bulk lane) ----------------------------------------

function renderCampaigns(page) {
  const box = $("#campaigns");
  if (!page.campaigns.length) {
    box.replaceChildren(el("p", "no campaigns", "note"));
    return;
  }
  const table = el("table");
  table.id = "campaign-table";
  const head = el("tr");
  const columns = ["open", "fulfilled", "no_records", "unresponsive", "cancelled"];
  for (const h of ["campaign", "status", "requests", ...columns.map((c) => c.replace("_", " ")), "loaded"]) {
    head.append(el("th", h));
  }
  table.append(el("thead"), el("tbody"));
  table.tHead.append(head);
  for (const c of page.campaigns) {
    const tr = el("tr");
    tr.dataset.campaign = c.id;
    tr.append(el("td", c.name), el("td", c.status), el("td", c.requests));
    for (const k of columns) tr.append(el("td", c.by_status[k] || 0));
    tr.append(el("td", local(c.created_at)));
    table.tBodies[0].append(tr);
  }
  const note = el("p", `${page.campaigns.length} of ${page.total} campaigns, newest first`, "note");
  box.replaceChildren(table, note);
}

// --- the review queue -----------------------------------------------------------------------

function renderReview(r) {
  const box = $("#review");
  if (!r.documents.length) {
    box.replaceChildren(el("p", "nothing waits for review", "note"));
    return;
  }
  const table = el("table");
  table.id = "review-table";
  const head = el("tr");
  for (const h of ["document", "provider", "received", "pages", "flags", "goes unreviewed", ""]) head.append(el("th", h));
  table.append(el("thead"), el("tbody"));
  table.tHead.append(head);
  for (const d of r.documents) {
    const tr = el("tr");
    tr.dataset.documentId = d.document_id;
    const link = el("a", d.document_id.slice(0, 12));
    if (d.case_id) link.href = `#/case/${d.case_id}`;
    const cell = el("td");
    cell.append(link);
    const act = el("td");
    for (const [label, action] of [["release", "release"], ["reject", "reject"]]) {
      const b = el("button", label);
      b.type = "button";
      b.dataset.action = action;
      b.addEventListener("click", () => decide(d.document_id, action));
      act.append(b);
    }
    tr.append(
      cell, el("td", d.provider_id || "—"), el("td", local(d.received_at)), el("td", d.pages),
      el("td", d.flags.join(", ")), el("td", local(d.sent_unreviewed_at)), act,
    );
    table.tBodies[0].append(tr);
  }
  box.replaceChildren(table);
}

async function decide(documentId, action) {
  const reviewer = $("#review-by").value.trim();
  if (!reviewer) {
    $("#review-error").textContent = "give your name as reviewer first (kept in the audit trail)";
    return;
  }
  $("#review-error").textContent = "";
  await api(`/v1/review/${encodeURIComponent(documentId)}/${action}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ reviewer }),
  });
  refresh();
}

function caseRow(c) {
  const tr = el("tr");
  tr.dataset.caseId = c.case_id;
  tr.dataset.marks = c.at_risk.join(" ");
  tr.dataset.kind = c.kind;
  if (c.at_risk.length) tr.classList.add("at-risk");
  if (c.overdue) tr.classList.add("overdue");
  const marks = el("td");
  marks.className = "marks";
  for (const m of c.at_risk) marks.append(el("span", m.replace("_", " "), `mark ${m}`));
  tr.append(
    el("td", c.notification_id), el("td", c.review_type), el("td", c.agency_id),
    el("td", c.status), el("td", local(c.due_at)), el("td", hoursLeft(c.hours_left)),
    el("td", c.requests_open), marks,
  );
  tr.addEventListener("click", () => { location.hash = `#/case/${c.case_id}`; });
  return tr;
}

function renderQueues(q) {
  const box = $("#queues");
  if (!q.broker_up) {
    box.replaceChildren(el("p", "broker not reachable (no queue figures)", "error"));
    return;
  }
  const table = el("table");
  table.id = "queue-table";
  const head = el("tr");
  for (const h of ["queue", "waiting", "delayed", "dead letters", "oldest message"]) head.append(el("th", h));
  table.append(el("thead"), el("tbody"));
  table.tHead.append(head);
  for (const s of q.queues) {
    const tr = el("tr");
    tr.dataset.queue = s.queue;
    const age = s.oldest_age_s === null ? "—" : `${Math.round(s.oldest_age_s)} s`;
    tr.append(el("td", s.queue), el("td", s.depth), el("td", s.delayed), el("td", s.dead), el("td", age));
    table.tBodies[0].append(tr);
  }
  const workers = el("p", `workers alive: ${q.workers_alive}`);
  workers.id = "workers-alive";
  box.replaceChildren(table, workers);
}

// --- one case -----------------------------------------------------------------------------

async function renderCase(caseId) {
  const [c, t, letters] = await Promise.all([
    api(`/v1/cases/${encodeURIComponent(caseId)}`),
    api(`/v1/cases/${encodeURIComponent(caseId)}/timeline`),
    api("/v1/dead-letters?limit=500"),
  ]);
  show("#case-view");
  $("#case-title").textContent = `${c.notification_id} · ${c.review_type} · ${c.status}`;
  const facts = $("#case-facts");
  facts.replaceChildren();
  for (const [k, v] of [
    ["jurisdiction", c.jurisdiction], ["received", local(c.received_at)], ["due", local(c.due_at)],
    ["assembly cutoff", local(c.assemble_at)], ["delivered", local(c.delivered_at)],
    ["attention", c.attention || "—"],
  ]) facts.append(el("dt", k), el("dd", v));
  const rows = [];
  for (const r of c.requests) {
    if (!r.attempts.length) {
      const tr = el("tr");
      tr.append(el("td", r.provider_id), el("td", `${r.reference} · ${r.status}`), el("td", "—"));
      rows.push(tr);
    }
    for (const a of r.attempts) {
      const tr = el("tr");
      tr.append(
        el("td", r.provider_id), el("td", `${r.reference} · ${r.status}`), el("td", a.number),
        el("td", a.channel), el("td", local(a.planned_at)), el("td", local(a.sent_at)),
        el("td", a.outcome), el("td", a.failure_reason || ""),
      );
      rows.push(tr);
    }
  }
  $("#case-attempts tbody").replaceChildren(...rows);
  const packets = $("#case-packets");
  packets.replaceChildren();
  if (!t.packets.length) packets.append(el("p", "no packet yet", "note"));
  for (const p of t.packets) {
    packets.append(el("h4", `packet ${p.sequence}: ${p.pages} pages · sha256 ${p.sha256.slice(0, 16)}…`));
    const list = el("ol");
    list.className = "packet-index";
    for (const part of p.parts) list.append(el("li", `${part.title} (pages ${part.first_page}–${part.last_page})`));
    for (const x of p.excluded) list.append(el("li", `excluded: ${x.title || x.kind} — ${x.reason || ""}`, "error"));
    packets.append(list);
  }
  $("#case-timeline").replaceChildren(...t.events.map((e) => {
    const li = el("li", `${local(e.at)} ${e.kind} `);
    li.append(el("code", JSON.stringify(e.detail)));
    return li;
  }));
  const actions = $("#case-actions");
  const mine = letters.dead_letters.filter((d) => d.case_id === caseId);
  actions.replaceChildren(el("p", mine.length ? "" : "nothing to do here for the ops role", "note"));
  for (const d of mine) {
    const button = el("button", `retry ${d.command} (${d.error})`);
    button.type = "button";
    button.addEventListener("click", async () => {
      await api(`/v1/dead-letters/${encodeURIComponent(d.id)}/retry`, { method: "POST" });
      refresh();
    });
    actions.append(button);
  }
}

// --- routing and refresh --------------------------------------------------------------------

async function refresh() {
  clearTimeout(timer);
  if (!sessionStorage.getItem(KEY)) { askForKey(); return; }
  const route = location.hash.match(/^#\/case\/([^/]+)$/);
  try {
    if (route) await renderCase(decodeURIComponent(route[1]));
    else await renderList();
    $("#last-updated").textContent = `updated ${new Date().toLocaleTimeString()} · every ${REFRESH_S} s`;
    document.body.dataset.loaded = String(Date.now());
  } catch (err) {
    if (err instanceof AuthError) { askForKey(`the key was refused (${err.message})`); return; }
    $("#last-updated").textContent = `update failed: ${err.message}; retrying`;
  }
  timer = setTimeout(refresh, REFRESH_S * 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("#key-input").value.trim());
    $("#key-input").value = "";
    $("#key-error").textContent = "";
    refresh();
  });
  $("#sign-out").addEventListener("click", () => askForKey("key forgotten"));
  for (const id of ["#f-kind", "#f-status", "#f-review", "#f-agency", "#f-search", "#f-risk"]) {
    $(id).addEventListener("change", refresh);
  }
  $("#filters").addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
  window.addEventListener("hashchange", refresh);
  refresh();
});
