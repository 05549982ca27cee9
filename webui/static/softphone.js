// The agent softphone: one WebSocket (/ws/agent, protocol v1, see docs/webrtc-signalling.md)
// for signalling, one RTCPeerConnection per call. The browser always makes the SDP offer and
// trickles its ICE candidates; the server answers at once with its host candidates.
// Caller names and numbers are shown with textContent only (never parsed as markup).
(function () {
  "use strict";
  const root = document.getElementById("softphone");
  if (!root) return;
  const L = JSON.parse(root.dataset.labels);
  const $ = (id) => document.getElementById(id);
  const status = $("sp-status"), alertBox = $("sp-alert");
  const VERSION = 1;

  let ws = null, extension = null, ready = false, replaced = false, backoff = 500;
  let iceServers = [];
  let nextRef = 1;
  const calls = new Map();          // call_id -> {summary, pc, answeredAt}
  let current = null;               // the call shown in the call panel
  let ringing = null;               // the incoming call shown
  let consultFrom = null;           // the held call a consultation call (current) may take over
  let audioCtx = null, micStream = null, micAnalyser = null, remoteAnalyser = null, ringer = null;

  // ---------------------------------------------------------------- messages
  function say(text, isError) {
    if (isError) { alertBox.textContent = text; alertBox.hidden = false; }
    else { status.textContent = text; }
  }
  function clearAlert() { alertBox.hidden = true; alertBox.textContent = ""; }
  function reasonText(reason) { return L["reason." + reason] || reason || ""; }

  function send(message) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return null;
    message.ref = nextRef++;
    ws.send(JSON.stringify(message));
    return message.ref;
  }

  // ---------------------------------------------------------------- audio
  function context() {
    if (!audioCtx) audioCtx = new AudioContext();
    if (audioCtx.state === "suspended") audioCtx.resume();
    return audioCtx;
  }

  async function microphone() {
    if (micStream) return micStream;
    const processing = $("sp-processing").checked;
    const deviceId = $("sp-mic").value;
    const audio = { echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing };
    if (deviceId) audio.deviceId = { exact: deviceId };
    try {
      micStream = await navigator.mediaDevices.getUserMedia({ audio: audio });
    } catch (err) {
      say(err && err.name === "NotFoundError" ? L.mic_missing : L.mic_denied, true);
      throw err;
    }
    micAnalyser = context().createAnalyser();
    micAnalyser.fftSize = 2048;
    context().createMediaStreamSource(micStream).connect(micAnalyser);
    listDevices();
    return micStream;
  }

  async function listDevices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices();
    for (const [kind, select] of [["audioinput", $("sp-mic")], ["audiooutput", $("sp-speaker")]]) {
      const chosen = select.value;
      select.replaceChildren(...devices.filter((d) => d.kind === kind).map((d, i) => {
        const option = document.createElement("option");
        option.value = d.deviceId;
        option.textContent = d.label || (kind === "audioinput" ? L.microphone : L.speaker) + " " + (i + 1);
        return option;
      }));
      if (chosen) select.value = chosen;
    }
  }

  function level(analyser) {
    if (!analyser) return 0;
    const data = new Float32Array(analyser.fftSize);
    analyser.getFloatTimeDomainData(data);
    let sum = 0;
    for (const v of data) sum += v * v;
    return Math.min(1, Math.sqrt(sum / data.length) * 4);
  }

  function meters() {
    $("sp-mic-level").value = level(micAnalyser);
    $("sp-speaker-level").value = level(remoteAnalyser);
    if (current && current.answeredAt) {
      const s = Math.floor((Date.now() - current.answeredAt) / 1000);
      $("sp-timer").textContent = Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
    }
    requestAnimationFrame(meters);
  }

  function playRemote(stream) {
    const audio = $("sp-remote");
    audio.srcObject = stream;
    audio.play().catch(() => {});
    remoteAnalyser = context().createAnalyser();
    remoteAnalyser.fftSize = 8192;
    context().createMediaStreamSource(stream).connect(remoteAnalyser);
    window.softphoneRemote = remoteAnalyser;  // for tests and diagnostics: what the agent hears
  }

  function ring(on) {
    if (ringer) { ringer.stop(); ringer = null; }
    if (!on) return;
    // A local ring (440 + 480 Hz, North American cadence): no audio has to come from the server.
    const ctx = context(), gain = ctx.createGain();
    gain.gain.value = 0;
    const oscs = [440, 480].map((f) => { const o = ctx.createOscillator(); o.frequency.value = f; o.connect(gain); o.start(); return o; });
    gain.connect(ctx.destination);
    let phase = 0;
    const timer = setInterval(() => { gain.gain.value = (phase++ % 6) < 2 ? 0.1 : 0; }, 1000);
    ringer = { stop() { clearInterval(timer); oscs.forEach((o) => o.stop()); gain.disconnect(); } };
  }

  // ---------------------------------------------------------------- media per call
  async function startMedia(call) {
    if (call.pc) call.pc.close();
    const pc = new RTCPeerConnection({ iceServers: iceServers });
    call.pc = pc;
    const stream = await microphone();
    for (const track of stream.getAudioTracks()) pc.addTrack(track, stream);
    pc.onicecandidate = (e) => {
      const c = e.candidate;
      send({ type: "candidate", call_id: call.summary.call_id, candidate: c ? c.candidate : null,
             sdpMid: c ? c.sdpMid : null, sdpMLineIndex: c ? c.sdpMLineIndex : null });
    };
    pc.ontrack = (e) => playRemote(e.streams[0] || new MediaStream([e.track]));
    pc.onconnectionstatechange = () => {
      if (pc !== call.pc) return;
      if (pc.connectionState === "failed") say(L.connection_failed, true);
      if (pc.connectionState === "connected") clearAlert();
    };
    // Trickle ICE: the offer leaves now, candidates follow as the browser finds them.
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    send({ type: "offer", call_id: call.summary.call_id, sdp: pc.localDescription.sdp });
  }

  function stopMedia(call) {
    if (call.pc) { call.pc.close(); call.pc = null; }
  }

  // ---------------------------------------------------------------- panels
  function show(call) {
    current = call;
    const panel = $("sp-call");
    if (!call) { panel.hidden = true; return; }
    const s = call.summary;
    panel.hidden = false;
    $("sp-peer").textContent = s.room ? L.in_conference : s.peer;
    $("sp-peer-name").textContent = s.room ? "" : callerName(call);
    $("sp-call-state").textContent = s.held ? L.held : s.room ? L.in_conference
      : s.state === "answered" ? L.talking : L.dialling;
    $("sp-hold").textContent = s.held ? L.unhold : L.hold;
    $("sp-mute").textContent = s.muted ? L.unmute : L.mute;
    $("sp-mute").setAttribute("aria-pressed", String(!!s.muted));
    $("sp-hold").hidden = !!s.room;
    // Transfer controls: blind or consult on a plain answered call; complete or conference
    // while consulting (the consultation shown, the first call held).
    const consulting = consultFrom && consultFrom !== call && calls.has(consultFrom.summary.call_id);
    $("sp-transfer").hidden = !!s.room || consulting || s.state !== "answered";
    $("sp-consultation").hidden = !consulting;
    if (consulting) {
      $("sp-consulting").textContent = L.consulting.replace("{peer}", consultFrom.summary.peer);
      $("sp-complete").disabled = $("sp-conference").disabled = s.state !== "answered";
    }
    showOthers();
  }

  // The agent's other calls (one on hold while consulting, say): each can be brought back.
  function showOthers() {
    const others = [...calls.values()].filter((c) => c !== current && c !== ringing && c.summary.state !== "ended");
    $("sp-others").hidden = others.length === 0;
    $("sp-other-calls").replaceChildren(...others.map((call) => {
      const item = document.createElement("li"), label = document.createElement("span");
      const s = call.summary;
      label.textContent = s.peer + (s.peer_name ? " " + s.peer_name : "") + " · " + (s.held ? L.held : L.talking);
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = L.switch_to;
      button.addEventListener("click", () => show(call));
      item.append(label, button);
      return item;
    }));
  }

  function showIncoming(call) {
    ringing = call;
    $("sp-incoming").hidden = !call;
    ring(!!call);
    if (call) {
      $("sp-incoming-name").textContent = callerName(call);
      $("sp-incoming-number").textContent = call.summary.peer;
    }
  }

  // The caller as the CRM knows them (caller_info, a moment after the ring): the member's
  // name in place of the SIP display name, marked VIP or blacklisted; else the display name.
  function callerName(call) {
    const member = call.member;
    if (!member) return call.summary.peer_name || "";
    const marks = [];
    if (member.vip_rank > 0) marks.push(L.vip || "VIP");
    if (member.blacklisted) marks.push(L.blacklisted || "blacklisted");
    return marks.length ? member.name + " · " + marks.join(" · ") : member.name;
  }

  function showCallerInfo(m) {
    const call = calls.get(m.call_id);
    if (!call || !m.member || typeof m.member.name !== "string") return;
    call.member = m.member;
    if (ringing === call) $("sp-incoming-name").textContent = callerName(call);
    if (current === call) $("sp-peer-name").textContent = callerName(call);
  }

  function update(summary) {
    let call = calls.get(summary.call_id);
    if (!call) { call = { summary: summary, pc: null, answeredAt: null }; calls.set(summary.call_id, call); }
    call.summary = summary;
    if (summary.state === "answered" && !call.answeredAt) call.answeredAt = Date.now();
    if (summary.state === "ended") {
      calls.delete(summary.call_id);
      stopMedia(call);
      if (ringing === call) showIncoming(null);
      if (consultFrom === call) consultFrom = null;
      if (current === call) {
        $("sp-timer").textContent = "0:00";
        // Back to another call of the agent's, if any (the one held for a consultation).
        const next = [...calls.values()].find((c) => c.summary.state === "answered");
        show(next || null);
      } else showOthers();
      say(L.ended + (summary.reason ? " · " + reasonText(summary.reason) : ""));
      return call;
    }
    if (ringing === call && summary.state !== "ringing") showIncoming(null);
    // A new outgoing call comes to the front; another call's change does not take it away.
    if ((summary.direction === "outbound" && summary.state === "ringing" && !call.answeredAt)
        || (summary.state === "answered" && (!current || current === call))) show(call);
    else if (current) show(current);
    return call;
  }

  // ---------------------------------------------------------------- the queue agent's state
  // The server pushes agent_state once after register and on every change, whoever made it
  // (the agent, a supervisor, a desk phone's *61-*64, the ACD); the buttons only ask, and the
  // bar moves with the push. Times are the server's: `now` gives the offset to this clock.
  let agent = null, clockOffset = 0, agentTimer = null;
  const agentRefs = new Set();      // refs of agent_state requests (their refusals are shown)
  // What each state allows; the server refuses the rest anyway (docs/webrtc-signalling.md).
  const AGENT_ACTIONS = {
    logged_out: ["login"],
    ready: ["not_ready", "logout"],
    not_ready: ["ready", "not_ready", "logout"],   // not_ready again: another reason
    reserved: ["not_ready", "logout"],             // the ringing offer goes to a colleague
    on_call: ["logout"],                           // logged out after the call and its wrap-up
    wrap_up: ["ready", "not_ready", "logout"],
  };

  function agentButtons(allowed) {
    for (const button of document.querySelectorAll("#sp-agent button[data-action]")) {
      button.disabled = !allowed.includes(button.dataset.action);
    }
    $("sp-agent-reason").disabled = !allowed.includes("not_ready");
  }

  function showAgent(m) {
    agent = m;
    clockOffset = typeof m.now === "number" ? m.now * 1000 - Date.now() : 0;
    $("sp-agent").hidden = false;
    const badge = $("sp-agent-state");
    badge.textContent = L["agent.state." + m.state] || m.state;
    badge.dataset.state = m.state;
    const paused = m.state === "not_ready" && m.reason;
    $("sp-agent-reason-shown").textContent = paused ? "· " + (L["agent.reason." + m.reason] || m.reason) : "";
    const select = $("sp-agent-reason");
    if (paused && [...select.options].some((o) => o.value === m.reason)) select.value = m.reason;
    const names = (m.queues || []).map((q) => q.name + (q.penalty ? " (" + q.penalty + ")" : ""));
    $("sp-agent-queues").textContent = names.length ? L["agent.queues"].replace("{queues}", names.join(", ")) : "";
    agentButtons(AGENT_ACTIONS[m.state] || []);
    agentClock();
    if (!agentTimer) agentTimer = setInterval(agentClock, 500);
  }

  // Wrap-up counts down to its end; any other state shows how long it has lasted.
  function agentClock() {
    if (!agent) return;
    const now = Date.now() + clockOffset;
    let text = "";
    if (agent.state === "wrap_up" && agent.wrap_up_until) {
      const left = Math.max(0, Math.ceil(agent.wrap_up_until - now / 1000));
      text = L["agent.wrap_up_left"].replace("{seconds}", left);
    } else if (agent.since) {
      const s = Math.max(0, Math.floor(now / 1000 - agent.since));
      text = L["agent.in_state"].replace("{time}", Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0"));
    }
    $("sp-agent-clock").textContent = text;
  }

  function agentAction(action) {
    clearAlert();
    const message = { type: "agent_state", action: action };
    if (action === "not_ready") message.reason = $("sp-agent-reason").value;
    const ref = send(message);
    if (ref !== null) agentRefs.add(ref);
  }

  // ---------------------------------------------------------------- signalling
  function onMessage(m) {
    switch (m.type) {
      case "welcome":
        extension = m.extension;
        iceServers = m.ice_servers || [];
        if (!extension) { say(L.no_extension, true); return; }
        $("sp-extension").textContent = L.extension.replace("{extension}", extension);
        send({ type: "register" });
        break;
      case "registered":
        ready = true;
        backoff = 500;
        say(L.registered);
        root.dataset.registered = "true";
        // Calls that outlived a reconnect: new media for each (an ICE restart in effect).
        for (const s of m.calls) {
          const call = update(s);
          if (s.state === "ringing" && s.direction === "inbound") showIncoming(call);
          else startMedia(call).catch(() => {});
        }
        break;
      case "call":
        startMedia(update(m)).catch(() => send({ type: "hangup", call_id: m.call_id }));
        break;
      case "incoming":
        showIncoming(update(m));
        break;
      case "state":
        update(m);
        break;
      case "transfer_state":
        say((m.state === "ringing" ? L.transfer_ringing : L.transfer_trying).replace("{target}", m.target || ""));
        break;
      case "caller_info":
        showCallerInfo(m);
        break;
      case "agent_state":
        showAgent(m);
        break;
      case "ok":
        agentRefs.delete(m.ref);
        break;
      case "media":
        if (m.state === "failed") say(L.connection_failed, true);
        else if (m.state === "connected") say(L.media_connected);
        break;
      case "answer": {
        const call = calls.get(m.call_id);
        if (call && call.pc) call.pc.setRemoteDescription({ type: "answer", sdp: m.sdp }).catch(() => say(L.connection_failed, true));
        break;
      }
      case "replaced":
        replaced = true;
        say(L.replaced, true);
        break;
      case "error":
        if (agentRefs.delete(m.ref)) say(L["agent.error." + m.code] || m.message, true);
        else if (m.code === "no_extension") say(L.no_extension, true);
        else if (m.code === "transfer_failed") {
          const why = L["transfer_status." + m.status] || L["transfer_status.other"].replace("{status}", m.status);
          say(L.transfer_failed.replace("{target}", m.target || "").replace("{status}", why), true);
          say(L.talking);   // no longer "transferring…": the call is back
        }
        else if (m.code !== "bad_candidate") say(L.error + ": " + (reasonText(m.code) || m.message), true);
        break;
    }
  }

  function connect() {
    say(ready ? L.reconnecting : L.registering);
    ready = false;
    root.dataset.registered = "false";
    agentButtons([]);   // until the server says the state again (after register)
    agentRefs.clear();
    ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/agent");
    ws.onopen = () => send({ type: "hello", v: VERSION });
    ws.onmessage = (e) => onMessage(JSON.parse(e.data));
    ws.onclose = (e) => {
      if (replaced || e.code === 4000 || e.code === 4001 || e.code === 1008) { say(L.offline); return; }
      say(L.reconnecting);
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }

  // ---------------------------------------------------------------- controls
  function key(digit) {
    if (current && current.summary.state === "answered") send({ type: "dtmf", call_id: current.summary.call_id, digits: digit });
    else $("sp-number").value += digit;
  }

  $("sp-dial-form").addEventListener("submit", (e) => {
    e.preventDefault();
    context();
    clearAlert();
    const number = $("sp-number").value.trim();
    if (!number || !ready) return;
    // Ask for the microphone first, so a refusal is explained before anything rings.
    microphone().then(() => { say(L.dialling); send({ type: "dial", number: number }); }, () => {});
  });
  for (const button of document.querySelectorAll(".sp-key")) button.addEventListener("click", () => key(button.dataset.key));
  $("sp-answer").addEventListener("click", () => {
    const call = ringing;
    if (!call) return;
    context();
    showIncoming(null);
    startMedia(call).then(() => send({ type: "answer", call_id: call.summary.call_id }),
                          () => send({ type: "reject", call_id: call.summary.call_id }));
    show(call);
  });
  $("sp-reject").addEventListener("click", () => { if (ringing) send({ type: "reject", call_id: ringing.summary.call_id }); });
  $("sp-hangup").addEventListener("click", () => { if (current) send({ type: "hangup", call_id: current.summary.call_id }); });
  $("sp-hold").addEventListener("click", () => {
    if (current) send({ type: current.summary.held ? "unhold" : "hold", call_id: current.summary.call_id });
  });
  $("sp-mute").addEventListener("click", () => {
    if (!current) return;
    const muted = !current.summary.muted;
    if (micStream) micStream.getAudioTracks().forEach((t) => { t.enabled = !muted; });
    send({ type: "mute", call_id: current.summary.call_id, muted: muted });
  });
  // Transfers (docs/webrtc-signalling.md): blind to the number typed; consult = hold this call
  // and dial the number, then complete (join the two parties) or make it a three-way call.
  function transferNumber() {
    const number = $("sp-transfer-number").value.trim();
    if (!/^[0-9*#+]{1,32}$/.test(number)) { say(L["reason.bad_number"], true); return null; }
    return number;
  }
  $("sp-blind").addEventListener("click", () => {
    const number = transferNumber();
    if (!current || !number) return;
    clearAlert();
    send({ type: "transfer", call_id: current.summary.call_id, target: number });
  });
  $("sp-consult").addEventListener("click", () => {
    const number = transferNumber();
    if (!current || !number) return;
    clearAlert();
    consultFrom = current;
    if (!current.summary.held) send({ type: "hold", call_id: current.summary.call_id });
    say(L.dialling);
    send({ type: "dial", number: number });
  });
  $("sp-complete").addEventListener("click", () => {
    if (!current || !consultFrom) return;
    send({ type: "transfer", call_id: consultFrom.summary.call_id, to_call: current.summary.call_id });
  });
  $("sp-conference").addEventListener("click", () => {
    if (!current || !consultFrom) return;
    const first = consultFrom;
    send({ type: "conference", call_id: first.summary.call_id, with_call: current.summary.call_id });
  });

  for (const button of document.querySelectorAll("#sp-agent button[data-action]")) {
    button.addEventListener("click", () => agentAction(button.dataset.action));
  }

  $("sp-mic").addEventListener("change", () => {
    if (micStream) micStream.getTracks().forEach((t) => t.stop());
    micStream = null;
    microphone().then((stream) => {
      for (const call of calls.values()) {
        if (!call.pc) continue;
        for (const sender of call.pc.getSenders()) if (sender.track && sender.track.kind === "audio") sender.replaceTrack(stream.getAudioTracks()[0]);
      }
    }, () => {});
  });
  $("sp-speaker").addEventListener("change", () => {
    const audio = $("sp-remote");
    if (audio.setSinkId) audio.setSinkId($("sp-speaker").value).catch(() => {});
  });

  if (!window.RTCPeerConnection || !navigator.mediaDevices) { say(L.unsupported, true); return; }
  listDevices();
  requestAnimationFrame(meters);
  connect();
})();
