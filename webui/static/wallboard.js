// The wallboard: one WebSocket, one JSON snapshot a second, cells filled with textContent only
// (names and caller numbers never become markup). For supervisors each agent row keeps one
// actions cell (built once, so a chosen reason survives the updates) whose buttons POST to
// /api/supervisor/...; the status line above the tables says what happened.
(function () {
  const root = document.getElementById("wallboard");
  const labels = JSON.parse(root.dataset.labels);
  const supervise = root.dataset.supervise === "1";
  const csrf = root.dataset.csrf;
  const reasons = JSON.parse(root.dataset.reasons || "[]");
  const status = document.getElementById("wb-status");
  const feedback = document.getElementById("wb-feedback");
  const dash = (v) => (v === null || v === undefined ? "–" : String(v));
  const mmss = (s) => (s === null || s === undefined ? "–" : Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"));
  const fill = (text, values) => text.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));
  const agentRows = new Map(); // agent id -> {tr, cells, actions}

  function row(cells, cls) {
    const tr = document.createElement("tr");
    if (cls) tr.className = cls;
    for (const [text, num] of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      if (num) td.className = "num";
      tr.appendChild(td);
    }
    return tr;
  }

  function say(text, ok) {
    if (!feedback) return;
    feedback.textContent = text;
    feedback.className = "wb-feedback " + (ok ? "ok" : "bad");
  }

  async function post(path, body, what, agent) {
    let response;
    try {
      response = await fetch("/api/supervisor" + path, {
        method: "POST", credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json" },
        body: body ? JSON.stringify(body) : "",
      });
    } catch (err) {
      say(fill(labels["wb.failed"], { action: what, message: String(err) }), false);
      return;
    }
    let data = {};
    try { data = await response.json(); } catch (err) { data = {}; }
    if (!response.ok) {
      const message = data.error ? data.error.message : response.status + " " + response.statusText;
      say(fill(labels["wb.failed"], { action: what, message: message }), false);
    } else if (data.state === "ringing") {
      say(fill(labels["wb.ringing_you"], { extension: data.extension, action: what, agent: agent }), true);
    } else {
      say(fill(labels["wb.done"], { action: what, agent: agent }), true);
    }
  }

  function button(text, cls, onclick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    if (cls) b.className = cls;
    b.addEventListener("click", onclick);
    return b;
  }

  function actionsCell(agentId) {
    const td = document.createElement("td");
    td.className = "wb-actions";
    const onCall = [];
    for (const action of ["listen", "whisper", "barge", "takeover"]) {
      const what = labels["wb." + action];
      const b = button(what, "act-" + action, () => post("/agents/" + encodeURIComponent(agentId) + "/" + action,
                                                          null, what, agentId));
      onCall.push(b);
      td.appendChild(b);
    }
    td.appendChild(button(labels["wb.force_ready"], "quiet act-ready", () => post(
      "/agents/" + encodeURIComponent(agentId) + "/ready", null, labels["wb.force_ready"], agentId)));
    const select = document.createElement("select");
    select.className = "act-reason";
    select.setAttribute("aria-label", labels["wb.force_not_ready"]);
    for (const reason of reasons) {
      const option = document.createElement("option");
      option.value = reason;
      option.textContent = labels["reason." + reason] || reason;
      select.appendChild(option);
    }
    td.appendChild(select);
    td.appendChild(button(labels["wb.force_not_ready"], "quiet act-not-ready", () => post(
      "/agents/" + encodeURIComponent(agentId) + "/not-ready", { reason: select.value },
      labels["wb.force_not_ready"], agentId)));
    td.appendChild(button(labels["wb.force_logout"], "quiet act-logout", () => post(
      "/agents/" + encodeURIComponent(agentId) + "/logout", null, labels["wb.force_logout"], agentId)));
    const hangup = button(labels["wb.force_hangup"], "danger act-hangup", () => {
      const callId = td.dataset.callId;
      if (callId) post("/calls/" + encodeURIComponent(callId) + "/hangup", null, labels["wb.force_hangup"], agentId);
    });
    td.appendChild(hangup);
    return { td: td, onCall: onCall, hangup: hangup };
  }

  function agentRow(a) {
    let entry = agentRows.get(a.id);
    if (!entry) {
      const tr = document.createElement("tr");
      const cells = [];
      for (let i = 0; i < 6; i++) {
        const td = document.createElement("td");
        if ([2, 4, 5].includes(i)) td.className = "num";
        tr.appendChild(td);
        cells.push(td);
      }
      entry = { tr: tr, cells: cells, actions: null };
      if (supervise) {
        entry.actions = actionsCell(a.id);
        tr.appendChild(entry.actions.td);
      }
      agentRows.set(a.id, entry);
    }
    // An agent on a direct call (not a queue call) keeps their state but is offered nothing.
    const direct = a.busy && labels["wb.direct_call"] ? " · " + labels["wb.direct_call"] : "";
    const texts = [a.name + " " + a.id,
      labels["state." + a.state] + (a.reason ? " · " + labels["reason." + a.reason] : "") + direct,
      mmss(a.in_state), a.caller || "", dash(a.calls), mmss(a.average_handle_time)];
    texts.forEach((text, i) => { if (entry.cells[i].textContent !== text) entry.cells[i].textContent = text; });
    entry.tr.className = "agent-" + a.id + " state-" + a.state + (a.busy ? " direct-call" : "");
    if (entry.actions) {
      const talking = a.state === "on_call";
      entry.actions.onCall.forEach((b) => { b.disabled = !talking; });
      entry.actions.hangup.disabled = !a.call_id;
      entry.actions.td.dataset.callId = a.call_id || "";
    }
    return entry.tr;
  }

  function render(data) {
    const queues = document.getElementById("wb-queues");
    queues.replaceChildren(...data.queues.map((q) => row([
      [q.name + " (" + q.id + ")"], [dash(q.waiting), 1], [mmss(q.longest_wait), 1], [dash(q.answered), 1],
      [dash(q.abandoned), 1], [q.service_level_pct === null ? "–" : q.service_level_pct + "%", 1],
      [dash(q.average_wait), 1], [dash(q.agents_ready), 1]])));
    const agents = document.getElementById("wb-agents");
    const wanted = data.agents.map(agentRow);
    // Same rows in the same order: leave the DOM alone (a focused button keeps its focus).
    const same = wanted.length === agents.children.length && wanted.every((tr, i) => agents.children[i] === tr);
    if (!same) agents.replaceChildren(...wanted);
  }

  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/wallboard");
    ws.onopen = () => { status.textContent = labels.live; };
    ws.onmessage = (m) => render(JSON.parse(m.data));
    ws.onclose = () => { status.textContent = labels.reconnecting; setTimeout(connect, 2000); };
  }
  connect();
})();
