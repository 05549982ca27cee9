// The wallboard: one WebSocket, one JSON snapshot a second, rows rebuilt with textContent only
// (names and caller numbers never become markup).
(function () {
  const root = document.getElementById("wallboard");
  const labels = JSON.parse(root.dataset.labels);
  const status = document.getElementById("wb-status");
  const dash = (v) => (v === null || v === undefined ? "–" : String(v));
  const mmss = (s) => (s === null || s === undefined ? "–" : Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"));

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

  function render(data) {
    const queues = document.getElementById("wb-queues");
    queues.replaceChildren(...data.queues.map((q) => row([
      [q.name + " (" + q.id + ")"], [dash(q.waiting), 1], [mmss(q.longest_wait), 1], [dash(q.answered), 1],
      [dash(q.abandoned), 1], [q.service_level_pct === null ? "–" : q.service_level_pct + "%", 1],
      [dash(q.average_wait), 1], [dash(q.agents_ready), 1]])));
    const agents = document.getElementById("wb-agents");
    agents.replaceChildren(...data.agents.map((a) => row([
      [a.name + " " + a.id], [labels["state." + a.state] + (a.reason ? " · " + labels["reason." + a.reason] : "")],
      [mmss(a.in_state), 1], [a.caller || ""], [dash(a.calls), 1], [mmss(a.average_handle_time), 1]],
      "agent-" + a.id + " state-" + a.state)));
  }

  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/wallboard");
    ws.onopen = () => { status.textContent = labels.live; };
    ws.onmessage = (m) => render(JSON.parse(m.data));
    ws.onclose = () => { status.textContent = labels.reconnecting; setTimeout(connect, 2000); };
  }
  connect();
})();
