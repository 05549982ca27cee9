// Conference rooms: the rooms' members polled from /api/conferences and drawn with textContent
// only (caller numbers and names never become markup); mute, unmute and kick POST to the API.
(function () {
  const root = document.getElementById("conferences");
  const labels = JSON.parse(root.dataset.labels);
  const csrf = root.dataset.csrf;
  const poll = parseInt(root.dataset.poll, 10) || 2000;
  const feedback = document.getElementById("conf-feedback");
  const fill = (text, values) => text.replace(/\{(\w+)\}/g, (m, k) => (k in values ? String(values[k]) : m));

  function say(text, ok) {
    feedback.textContent = text;
    feedback.className = "wb-feedback " + (ok ? "ok" : "bad");
  }

  function cell(tr, text) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  async function act(room, callId, action) {
    try {
      const response = await fetch("/api/conferences/" + encodeURIComponent(room) + "/members/" +
                                   encodeURIComponent(callId) + "/" + action,
                                   { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
      const data = await response.json().catch(() => ({}));
      if (response.ok) say(labels["conf.done"], true);
      else say(fill(labels["conf.failed"], { message: data.error ? data.error.message : response.status }), false);
    } catch (err) {
      say(fill(labels["conf.failed"], { message: String(err) }), false);
    }
    refresh();
  }

  function button(text, cls, onclick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = cls;
    b.textContent = text;
    b.addEventListener("click", onclick);
    return b;
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "";
  }

  function render(rooms) {
    for (const room of rooms) {
      const section = root.querySelector('section[data-room="' + CSS.escape(room.number) + '"]');
      if (!section) continue;
      section.querySelector(".conf-count").textContent = fill(labels["conf.members"], { count: room.members.length });
      const rows = room.members.map((m) => {
        const tr = document.createElement("tr");
        tr.dataset.call = m.call_id;
        cell(tr, m.caller);
        cell(tr, m.name);
        cell(tr, when(m.joined_at));
        cell(tr, m.muted ? "✓" : "");
        cell(tr, m.moderator ? "✓" : "");
        const td = cell(tr, "");
        td.className = "wb-actions";
        td.appendChild(m.muted
          ? button(labels["conf.unmute"], "quiet act-unmute", () => act(room.number, m.call_id, "unmute"))
          : button(labels["conf.mute"], "quiet act-mute", () => act(room.number, m.call_id, "mute")));
        td.appendChild(button(labels["conf.kick"], "danger act-kick", () => act(room.number, m.call_id, "kick")));
        return tr;
      });
      if (!rows.length) {
        const tr = document.createElement("tr");
        tr.className = "empty";
        const td = cell(tr, labels["conf.empty"]);
        td.colSpan = 6;
        rows.push(tr);
      }
      section.querySelector(".conf-members").replaceChildren(...rows);
    }
  }

  async function refresh() {
    try {
      const response = await fetch("/api/conferences", { credentials: "same-origin" });
      if (response.ok) render((await response.json()).rooms);
    } catch (err) {
      // The next poll tries again.
    }
  }

  refresh();
  setInterval(refresh, poll);
})();
