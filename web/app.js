// The console: static ES module calling the HTTP API with the session's bearer token.
const $ = (sel) => document.querySelector(sel);
const main = $("#main");
let me = null;

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function showError(text) {
  const box = $("#error");
  box.textContent = text;
  box.hidden = !text;
}
async function api(path, options = {}) {
  const token = sessionStorage.getItem("token");
  const headers = { ...(options.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const r = await fetch(path, { ...options, headers });
  const body = await r.json().catch(() => ({ error: "bad_response", detail: `HTTP ${r.status}` }));
  if (!r.ok) {
    if (r.status === 401 && path !== "/api/v1/auth/login") { sessionStorage.removeItem("token"); me = null; }
    throw new Error(`${body.error || r.status}: ${body.detail || ""}`);
  }
  return body;
}
const time = (ms) => (ms ? new Date(ms).toLocaleString("zh-CN", { hour12: false }) : "");

function loginView() {
  $("#nav").hidden = true;
  $("#who").textContent = "";
  main.innerHTML = `<form class="login" id="login"><h2>登录</h2>
    <label>用户名 <input name="username" autocomplete="username" required></label>
    <label>密码 <input name="password" type="password" autocomplete="current-password" required></label>
    <button type="submit">登录</button></form>`;
  $("#login").onsubmit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    try {
      const r = await api("/api/v1/auth/login", { method: "POST", json: { username: f.get("username"), password: f.get("password") } });
      sessionStorage.setItem("token", r.token);
      showError("");
      await route();
    } catch (err) { showError(`登录失败 — ${err.message}`); }
  };
}

function renderPayload(m, q) {
  const p = m.payload || {};
  const st = esc(((m.media || [])[0] || {}).state || "pending");
  const hl = (t) => {
    const s = esc(t);
    return q ? s.split(esc(q)).join(`<mark>${esc(q)}</mark>`) : s;
  };
  switch (m.msgtype) {
    case "text": return hl(p.content);
    case "revoke": return `<span>撤回了一条消息</span>`;
    case "image": return `<span class="media" data-seq="${m.seq}" data-state="${st}" data-show="img">[图片] ${Math.round((p.filesize || 0) / 1024)} KB</span>`;
    case "emotion": return `<span class="media" data-seq="${m.seq}" data-state="${st}" data-show="img">[表情]</span>`;
    case "voice": return `<span class="media" data-seq="${m.seq}" data-show="voice">[语音] ${esc(Number(p.play_length) || 0)} 秒 ${st === "stored" ? `<button class="playvoice">播放</button> <button class="getmedia" data-seq="${m.seq}" data-name="voice-${m.seq}.amr">下载 (AMR)</button>` : `<span class="muted">（${MEDIA_STATES[st] || esc(st)}）</span>`}</span>`;
    case "video": return `<span class="media" data-seq="${m.seq}" data-show="video">[视频] ${esc(Number(p.play_length) || 0)} 秒 ${st === "stored" ? `<button class="playmedia">播放</button>` : ""}</span>`;
    case "file": return `<span class="card">📄 ${hl(p.filename)} · ${Math.round((p.filesize || 0) / 1024)} KB ${st === "stored" ? `<button class="getmedia" data-seq="${m.seq}" data-name="${esc(p.filename || "file")}">下载</button>` : ""}</span>`;
    case "link": return `<span class="card">🔗 <b>${hl(p.title)}</b><br>${hl(p.description)}<br><span class="muted">${esc(p.link_url)}</span></span>`;
    case "weapp": return `<span class="card">小程序：${hl(p.title)} · ${esc(p.displayname)}</span>`;
    case "card": return `<span class="card">名片：${esc(p.corpname)} / ${esc(p.userid)}</span>`;
    case "location": return `<span class="card">📍 ${hl(p.title)} ${hl(p.address)}</span>`;
    case "redpacket": case "external_redpacket": return `<span class="card">🧧 红包：${hl(p.wish)}（${(p.totalamount || 0) / 100} 元）</span>`;
    case "chatrecord": return `<span class="card">聊天记录：${hl(p.title)}<br>${hl(m.text)}</span>`;
    case "mixed": return `<span class="card">图文混排：${hl(m.text)}</span>`;
    case "agree": return `客户同意会话存档`;
    case "disagree": return `客户不同意会话存档`;
    default: return m.text ? hl(m.text) : `[${esc(m.msgtype)}]`;
  }
}

function hashParams() {
  return new URLSearchParams(location.hash.split("?")[1] || "");
}

// a snippet with [start, end) code-point ranges marked, escaped piece by piece
function marked(text, ranges) {
  const cps = Array.from(text || "");
  let out = "", at = 0;
  for (const [a, b] of ranges || []) {
    out += esc(cps.slice(at, a).join("")) + `<mark>${esc(cps.slice(a, b).join(""))}</mark>`;
    at = b;
  }
  return out + esc(cps.slice(at).join(""));
}

async function archiveView() {
  main.innerHTML = `<div class="cols">
    <div class="panel"><input id="empq" placeholder="搜索员工"><div class="list" id="emps"></div></div>
    <div class="panel"><div class="tabs" id="kinds"></div><input id="convq" placeholder="搜索会话"><div class="list" id="convs"></div></div>
    <div class="panel"><div class="tabs" id="types"></div><div class="tabs" id="ranges"></div>
      <input id="kw" placeholder="关键词（高亮）"><div id="msgs" class="muted">选择一个会话</div>
      <div id="msentinel"></div><button id="more" hidden>加载更多</button></div></div>`;
  const emps = await api("/api/v1/employees");
  let kind = "external", type = "all", days = null, conv = null, employee = null, cursor = null, anchor = null;
  const paintEmps = () => {
    const q = $("#empq").value;
    $("#emps").innerHTML = emps.filter((e) => !q || e.name.includes(q) || e.userid.includes(q))
      .map((e) => `<div data-u="${esc(e.userid)}">${esc(e.name)} <span class="muted">${esc(e.department || "")}${e.status === "resigned" ? " · 已离职" : ""}</span></div>`).join("") || "<p class='muted'>无</p>";
  };
  $("#empq").oninput = paintEmps;
  paintEmps();
  const tabs = (el, items, cur, on) => {
    el.innerHTML = items.map(([k, v]) => `<button data-k="${k}" class="${k === String(cur) ? "on" : ""}">${v}</button>`).join("");
    el.onclick = (e) => { if (e.target.dataset.k !== undefined) on(e.target.dataset.k); };
  };
  let convs = [];
  const loadConvs = async () => {
    tabs($("#kinds"), [["external", "外部联系人"], ["internal", "内部联系人"], ["group", "群聊"]], kind, (k) => { kind = k; loadConvs(); });
    convs = await api(`/api/v1/conversations?employee=${encodeURIComponent(employee)}&kind=${kind}`);
    paintConvs();
  };
  const paintConvs = () => {
    const q = $("#convq").value;
    $("#convs").innerHTML = convs.filter((c) => !q || c.conv.includes(q) || (c.title || "").includes(q))
      .map((c) => `<div data-c="${esc(c.conv)}">${esc(c.title)}<br><span class="muted">${time(c.last_msgtime)}</span></div>`).join("") || "<p class='muted'>无会话</p>";
  };
  $("#convq").oninput = paintConvs;
  const loadMsgs = async (append) => {
    const typeTabs = [["all", "全部"], ["image_video", "图片/视频"], ["file", "文件"], ["link", "链接"], ["voice", "语音消息"]];
    if (!conv.startsWith("g:")) typeTabs.splice(4, 0, ["voice_call", "语音通话"]);
    tabs($("#types"), typeTabs, type, (k) => { type = k; loadMsgs(false); });
    tabs($("#ranges"), [["", "全部时间"], ["7", "7天"], ["30", "30天"], ["90", "90天"]], days ?? "", (k) => { days = k || null; loadMsgs(false); });
    if (!append) cursor = anchor ? anchor + 1 : null;
    const qs = new URLSearchParams({ type, limit: "50" });
    if (days) qs.set("days", days);
    if (cursor) qs.set("before_seq", cursor);
    else if (anchor && !append) qs.set("before_seq", String(anchor + 1));  // the hit and what came before it
    const page = await api(`/api/v1/conversations/${encodeURIComponent(conv)}/messages?${qs}`);
    if (anchor && !append) {
      // the context of a search hit: the newer messages right after it, above it
      const after = await api(`/api/v1/conversations/${encodeURIComponent(conv)}/messages?after_seq=${anchor}&limit=10&type=${type}`);
      page.items = after.items.concat(page.items);
    }
    const kw = $("#kw").value;
    const html = page.items.filter((m) => !kw || (m.text || "").includes(kw)).map((m) =>
      `<div class="msg ${m.action === "recall" ? "recall" : ""}" data-seq="${m.seq}"><div class="meta">${esc(m.from)} · ${time(m.msgtime)}</div>${renderPayload(m, kw)}</div>`).join("");
    $("#msgs").className = "";
    $("#msgs").innerHTML = (append ? $("#msgs").innerHTML : "") + (html || (append ? "" : "<p class='muted'>没有消息</p>"));
    wireMedia($("#msgs"));
    cursor = page.next_cursor;
    $("#more").hidden = !cursor;
    if (anchor && !append) {
      const hit = document.querySelector(`#msgs [data-seq="${anchor}"]`);
      if (hit) { hit.classList.add("hit"); hit.scrollIntoView({ block: "center" }); }
    }
  };
  $("#kw").oninput = () => conv && loadMsgs(false);
  $("#more").onclick = () => loadMsgs(true);
  // infinite scroll: older messages load when the end of the pane comes into view
  let loading = false;
  new IntersectionObserver((entries) => {
    if (!entries.some((x) => x.isIntersecting) || !cursor || !conv || loading) return;
    loading = true;
    loadMsgs(true).catch((err) => showError(err.message)).finally(() => { loading = false; });
  }).observe($("#msentinel"));
  $("#emps").onclick = async (e) => {
    const d = e.target.closest("[data-u]"); if (!d) return;
    document.querySelectorAll("#emps .sel").forEach((x) => x.classList.remove("sel")); d.classList.add("sel");
    employee = d.dataset.u; await loadConvs().catch((err) => showError(err.message));
  };
  $("#convs").onclick = async (e) => {
    const d = e.target.closest("[data-c]"); if (!d) return;
    document.querySelectorAll("#convs .sel").forEach((x) => x.classList.remove("sel")); d.classList.add("sel");
    conv = d.dataset.c; anchor = null; await loadMsgs(false).catch((err) => showError(err.message));
  };
  // opened from a search result: the conversation, starting at the message found
  const params = hashParams();
  if (params.get("conv")) {
    conv = params.get("conv");
    anchor = Number(params.get("seq")) || null;
    $("#convs").innerHTML = `<div class="sel">${esc(conv)}</div>`;
    await loadMsgs(false);
  }
}

async function searchView() {
  const emps = await api("/api/v1/employees");
  const p = hashParams();
  main.innerHTML = `<form id="sform" class="search">
      <input name="q" placeholder="关键词：保本 收益（同时包含） 保本 OR 稳赚 -风险 &quot;加 微信&quot;" value="${esc(p.get("q") || "")}">
      <select name="employee"><option value="">全部员工</option>${emps.map((e) => `<option value="${esc(e.userid)}">${esc(e.name)}（${esc(e.userid)}）</option>`).join("")}</select>
      <input name="customer" placeholder="客户 external_userid">
      <select name="type"><option value="all">全部类型</option><option value="image_video">图片/视频</option><option value="file">文件</option><option value="link">链接</option><option value="voice_call">语音通话</option><option value="voice">语音消息</option></select>
      <select name="days"><option value="">全部时间</option><option value="7">7天</option><option value="30">30天</option><option value="90">90天</option></select>
      <button type="submit">搜索</button></form>
    <p id="stotal" class="muted"></p><div id="results"></div><div id="sentinel"></div><button id="smore" hidden>加载更多</button>`;
  let cursor = null, params = null, busy = false;
  const load = async (append) => {
    if (busy) return;
    busy = true;
    try {
      const qs = new URLSearchParams(params);
      qs.set("limit", "20");
      if (append && cursor) qs.set("cursor", cursor);
      const page = await api(`/api/v1/search?${qs}`);
      $("#stotal").textContent = `共 ${page.total} 条消息` + (page.index_lag ? `（索引尚缺 ${page.index_lag} 条，正在补齐）` : "");
      const html = page.items.map((it) => `<div class="msg result" data-conv="${esc(it.conv)}" data-seq="${it.seq}">
        <div class="meta">${esc(it.from_name)} · ${time(it.msgtime)} · ${esc(it.msgtype)}</div>
        <div class="snippet">${marked(it.snippet, it.highlights)}</div>
        <a href="#/archive?conv=${encodeURIComponent(it.conv)}&seq=${it.seq}">查看上下文</a></div>`).join("");
      $("#results").innerHTML = (append ? $("#results").innerHTML : "") + (html || (append ? "" : "<p class='muted'>没有找到消息</p>"));
      cursor = page.next_cursor;
      $("#smore").hidden = !cursor;
    } finally { busy = false; }
  };
  $("#sform").onsubmit = (e) => {
    e.preventDefault();
    params = {};
    for (const [k, v] of new FormData(e.target)) if (v) params[k] = v;
    cursor = null;
    load(false).catch((err) => showError(err.message));
  };
  $("#smore").onclick = () => load(true).catch((err) => showError(err.message));
  // infinite scroll: the next page loads when the end of the list comes into view
  new IntersectionObserver((entries) => {
    if (entries.some((x) => x.isIntersecting) && cursor && params) load(true).catch((err) => showError(err.message));
  }).observe($("#sentinel"));
  if (p.get("q")) $("#sform").requestSubmit();
}

function ago(s) {
  if (s === null || s === undefined) return "未知";
  if (s < 90) return `${Math.round(s)} 秒前`;
  if (s < 5400) return `${Math.round(s / 60)} 分钟前`;
  if (s < 172800) return `${Math.round(s / 3600)} 小时前`;
  return `${Math.round(s / 86400)} 天前`;
}

function syncLine(st) {
  const y = st && st.sync;
  if (!y) return "";
  return `<p class="muted" id="syncinfo">存档同步：最新消息 ${ago(y.newest_message_age_s)}，检查点 ${y.checkpoint} 于 ${ago(y.checkpoint_age_s)}确认，${y.running ? "同步进行中" : "同步未运行"}${y.last_error ? `，最近错误：${esc(y.last_error)}` : ""}</p>`;
}

async function catalogView() {
  let tab = "active";
  const deps = await api("/api/v1/departments");
  const stats = await api("/api/v1/stats").catch(() => null);
  const paint = async () => {
    const f = Object.fromEntries(new FormData($("#cform") || document.createElement("form")));
    let body;
    if (tab === "customers") {
      const qs = new URLSearchParams();
      if (f.name) qs.set("name", f.name);
      if (f.follow_user) qs.set("follow_user", f.follow_user);
      const r = await api(`/api/v1/archive/customers?${qs}`);
      body = `<p class="muted">共 ${r.total} 位客户</p><table><tr><th>客户</th><th>跟进员工</th><th>协作人</th><th>会话数</th><th>最后会话时间</th><th>同意状态</th></tr>
        ${r.items.slice(0, 500).map((c) => `<tr><td>${esc(c.name)}</td><td>${esc(c.follow_users.join("、"))}</td><td>${esc(c.collaborators.join("、"))}</td><td>${c.sessions}</td><td>${time(c.last_session_time)}</td><td>${{ agreed: "已同意", disagreed: "不同意" }[c.consent] || "未知"}</td></tr>`).join("")}</table>
        ${r.total > 500 ? `<p class="muted">仅显示前 500 位，请用筛选缩小范围</p>` : ""}`;
    } else {
      const qs = new URLSearchParams({ status: tab });
      if (f.name) qs.set("name", f.name);
      if (f.department) qs.set("department", f.department);
      if (f.enabled) qs.set("enabled", f.enabled);
      if (f.resigned_since) qs.set("resigned_since", String(new Date(f.resigned_since).getTime()));
      const r = await api(`/api/v1/archive/employees?${qs}`);
      body = `<p class="muted">员工 ${r.totals.employees} 人，开启存档 ${r.totals.archive_enabled} 人，符合筛选 ${r.totals.matching} 人</p><table><tr><th>员工</th><th>部门</th><th>存档</th><th>客户数</th><th>存档客户数</th><th>存档群数</th>${tab === "resigned" ? "<th>离职时间</th>" : ""}</tr>
        ${r.items.map((e) => `<tr><td>${esc(e.name)}</td><td>${esc(e.department || "")}</td><td>${e.archived ? "已开启" : "未开启"}</td><td>${e.customer_count}</td><td>${e.archived_customer_count}</td><td>${e.archived_group_count}</td>${tab === "resigned" ? `<td>${time(e.resigned_at)}</td>` : ""}</tr>`).join("")}</table>`;
    }
    const filters = tab === "customers"
      ? `<input name="name" placeholder="客户昵称" value="${esc(f.name || "")}"><input name="follow_user" placeholder="跟进员工 userid" value="${esc(f.follow_user || "")}">`
      : `<input name="name" placeholder="员工姓名" value="${esc(f.name || "")}">` + (tab === "active"
        ? `<select name="department"><option value="">全部部门</option>${deps.map((d) => `<option value="${d.id}" ${String(d.id) === f.department ? "selected" : ""}>${esc(d.name)}</option>`).join("")}</select>
           <select name="enabled"><option value="">存档：全部</option><option value="true" ${f.enabled === "true" ? "selected" : ""}>已开启</option><option value="false" ${f.enabled === "false" ? "selected" : ""}>未开启</option></select>`
        : `<label>离职时间晚于 <input type="date" name="resigned_since" value="${esc(f.resigned_since || "")}"></label>`);
    main.innerHTML = `${syncLine(stats)}<div class="tabs">${[["active", "在职员工"], ["resigned", "离职员工"], ["customers", "客户档案"]].map(([k, v]) => `<button data-t="${k}" class="${k === tab ? "on" : ""}">${v}</button>`).join("")}</div>
      <form id="cform" class="search">${filters}<button type="submit">筛选</button></form>${body}`;
    main.querySelector(".tabs").onclick = (e) => { if (e.target.dataset.t) { tab = e.target.dataset.t; $("#cform").reset(); $("#cform").innerHTML = ""; paint().catch((err) => showError(err.message)); } };
    $("#cform").onsubmit = (e) => { e.preventDefault(); paint().catch((err) => showError(err.message)); };
  };
  await paint();
}

const BEHAVIOURS = { push_card: "推送名片", red_packet: "发红包", delete_customer: "删除好友" };
const VERDICTS = { abnormal: "异常", normal: "正常", ignore: "忽略" };
const contextLink = (r) => (r.conv ? `<a class="ctx" href="#/archive?conv=${encodeURIComponent(r.conv)}&seq=${r.seq}">查看上下文</a>` : "");
const party = (r) => (r.group_name ? `群：${esc(r.group_name)}` : esc(r.customer_name || r.customer || ""));

async function auditsView() {
  const q = hashParams();
  const status = q.get("status") || "pending";
  const kind = q.get("kind") || "";
  const qs = new URLSearchParams({ status });
  if (kind) qs.set("kind", kind);
  const rows = await api(`/api/v1/audits?${qs}`);
  const canHandle = me.permissions.includes("audit.handle");
  const go = (k, v) => { const n = new URLSearchParams({ status, kind }); n.set(k, v); location.hash = `#/audits?${n}`; };
  main.innerHTML = `<div class="tabs" id="astatus"><button data-s="pending" class="${status === "pending" ? "on" : ""}">待处理</button>
    <button data-s="handled" class="${status === "handled" ? "on" : ""}">已处理</button>
    <span class="sep"></span>${[["", "全部"], ["content", "敏感词"], ["behaviour", "敏感行为"]].map(([k, v]) => `<button data-k="${k}" class="${k === kind ? "on" : ""}">${v}</button>`).join("")}</div>
    <p class="muted">共 ${rows.length} 条</p>
    <table id="audits"><tr><th>类型</th><th>员工</th><th>客户 / 群</th><th>内容</th><th>时间</th><th></th><th>${status === "pending" ? "处理" : "结论"}</th></tr>
    ${rows.map((a) => `<tr data-id="${esc(a.id)}"><td>${a.kind === "content" ? "敏感词：" + esc(a.words.join("、")) : esc(BEHAVIOURS[a.behaviour] || a.behaviour)}</td>
      <td>${esc(a.employee_name || a.employee)}</td><td>${party(a)}</td><td>${esc(String(a.text || "").slice(0, 200))}</td><td>${time(a.msgtime)}</td><td>${contextLink(a)}</td>
      <td>${status === "pending" ? (canHandle ? `<select class="verdict"><option value="" selected disabled>请选择结论</option>${Object.entries(VERDICTS).map(([k, v]) => `<option value="${k}">${v}</option>`).join("")}</select>
        <input class="remark" placeholder="备注"><button class="handle" disabled>提交</button>` : "<span class='muted'>无权限</span>") : `${esc(VERDICTS[a.verdict] || a.verdict)} · ${esc(a.handled_by)} ${esc(a.remark || "")}`}</td></tr>`).join("") || `<tr><td colspan=7 class="muted">无记录</td></tr>`}</table>`;
  $("#astatus").onclick = (e) => {
    if (e.target.dataset.s) go("status", e.target.dataset.s);
    else if (e.target.dataset.k !== undefined) go("kind", e.target.dataset.k);
  };
  main.querySelectorAll("select.verdict").forEach((sel) => sel.onchange = () => { sel.closest("tr").querySelector("button.handle").disabled = !sel.value; });
  main.querySelectorAll("button.handle").forEach((b) => b.onclick = async () => {
    const tr = b.closest("tr");
    try {
      await api(`/api/v1/audits/${encodeURIComponent(tr.dataset.id)}/handle`, { method: "POST", json: { verdict: tr.querySelector("select").value, remark: tr.querySelector("input").value } });
      tr.remove();
    } catch (err) { showError(err.message); }
  });
}

async function alertsView() {
  const kind = hashParams().get("kind") || "";
  const rows = (await api("/api/v1/alerts")).filter((r) => !kind || r.kind === kind).reverse();
  const minutes = (ms) => `${Math.round((ms || 0) / 60000)} 分钟`;
  main.innerHTML = `<div class="tabs" id="alkind">${[["", "全部"], ["sensitive_word", "敏感词告警"], ["timeout_reply", "超时未回复"]].map(([k, v]) => `<button data-k="${k}" class="${k === kind ? "on" : ""}">${v}</button>`).join("")}</div>
    <p class="muted">共 ${rows.length} 条告警（最新在前）</p>
    <table id="alerts"><tr><th>告警</th><th>员工</th><th>客户 / 群</th><th>消息时间</th><th>详情</th><th>通知（逐级上报）</th><th></th></tr>
    ${rows.map((r) => `<tr data-id="${esc(r.id)}"><td>${r.kind === "sensitive_word" ? `敏感词：${esc((r.words || []).join("、"))}` : `超时未回复 · ${r.level} 级（超过 ${minutes(r.threshold_ms)}）`}</td>
      <td>${esc(r.employee_name || r.employee)}</td><td>${party(r)}</td><td>${time(r.msgtime)}</td>
      <td>${r.kind === "timeout_reply" ? (r.answered_at ? `${minutes(r.delay_ms)}后回复` : `<span class="warn">已等待 ${minutes(r.delay_ms)}，未回复</span>`) : `级别 ${esc(r.severity ?? "")}`}</td>
      <td class="chain">${esc((r.notify_names || r.notify || []).join(" → "))}</td><td>${contextLink(r)}</td></tr>`).join("") || `<tr><td colspan=7 class="muted">无告警</td></tr>`}</table>`;
  $("#alkind").onclick = (e) => { if (e.target.dataset.k !== undefined) location.hash = `#/alerts?kind=${e.target.dataset.k}`; };
}

const SCOPES = { self: "仅本人", department: "本部门及下级", all: "全部" };
const PERM_NAMES = { "archive.read": "查看存档", "audit.read": "查看审计", "audit.handle": "处理审计", "words.read": "查看敏感词", "words.write": "设置敏感词与规则",
  "consent.read": "查看同意状态", "alerts.read": "查看告警", "admin.users": "管理用户", "ingest.write": "导入存档", "trail.read": "查看访问记录",
  "dialer.admin": "外呼管理", "dialer.call": "外呼拨打", "dialer.read": "外呼记录", "dialer.popup": "来电弹屏", "customers.read": "查看客户", "customers.write": "编辑客户",
  "customers.admin": "客户管理", "pools.claim": "公海领取", "messaging.send": "群发", "messaging.admin": "群发管理", "metrics.read": "监控指标" };

async function usersView() {
  const [users, roles] = await Promise.all([api("/api/v1/users"), api("/api/v1/roles")]);
  const allPerms = [...new Set(roles.flatMap((r) => r.permissions))].sort();
  const roleOptions = (cur) => roles.map((r) => `<option value="${esc(r.role)}" ${r.role === cur ? "selected" : ""}>${esc(r.role)}</option>`).join("");
  main.innerHTML = `<h3>用户</h3>
    <div class="search"><button id="bulkoff">停用所选</button><button id="bulkon">启用所选</button></div>
    <table id="users"><tr><th><input type="checkbox" id="allusers"></th><th>用户名</th><th>角色</th><th>员工</th><th>部门</th><th>状态</th><th>重置密码</th></tr>
    ${users.map((u) => `<tr data-u="${esc(u.username)}"><td><input type="checkbox" class="pick"></td><td>${esc(u.username)}</td>
      <td><select class="role">${roleOptions(u.role)}</select></td><td>${esc(u.employee || "")}</td><td>${esc(u.department ?? "")}</td>
      <td>${u.disabled ? "<span class='warn'>已停用</span>" : "正常"}</td><td><input type="password" class="newpw" placeholder="新密码（至少8位）" autocomplete="new-password"><button class="reset">重置</button></td></tr>`).join("")}</table>
    <form id="uform" class="search"><input name="username" placeholder="用户名" required><input name="password" type="password" placeholder="初始密码（至少8位）" autocomplete="new-password" required>
      <select name="role">${roleOptions("regular")}</select><input name="employee" placeholder="对应员工 userid"><input name="department" placeholder="部门 id" inputmode="numeric"><button type="submit">新建用户</button></form>
    <h3>角色</h3>
    <table id="roles"><tr><th>角色</th><th>功能权限</th><th>数据范围</th><th>账号数</th><th></th></tr>
    ${roles.map((r) => `<tr data-r="${esc(r.role)}"><td>${esc(r.role)}${r.builtin ? " <span class='muted'>（内置）</span>" : ""}</td><td>${r.permissions.map((p) => esc(PERM_NAMES[p] || p)).join("、")}</td>
      <td>${esc(SCOPES[r.scope] || r.scope)}</td><td>${r.users ?? ""}</td><td>${r.builtin ? "" : `<button class="delrole">删除</button>`}</td></tr>`).join("")}</table>
    <form id="rform"><h4>新建角色</h4><p><input name="role" placeholder="角色名（字母、数字、-、_）" required>
      <select name="scope">${Object.entries(SCOPES).map(([k, v]) => `<option value="${k}">数据范围：${v}</option>`).join("")}</select></p>
      <p class="perms">${allPerms.map((p) => `<label><input type="checkbox" name="perm" value="${esc(p)}"> ${esc(PERM_NAMES[p] || p)}</label>`).join(" ")}</p>
      <button type="submit">创建角色</button></form>`;
  const done = (text) => { showError(""); return usersView().then(() => { if (text) $("#main").insertAdjacentHTML("afterbegin", `<p class="ok" id="notice">${esc(text)}</p>`); }); };
  const fail = (err) => showError(err.message);
  $("#allusers").onchange = (e) => main.querySelectorAll("input.pick").forEach((c) => { c.checked = e.target.checked; });
  const picked = () => [...main.querySelectorAll("input.pick:checked")].map((c) => c.closest("tr").dataset.u);
  const bulk = (disabled) => async () => {
    const names = picked();
    if (!names.length) return showError("请先勾选用户");
    try { const r = await api("/api/v1/users/disable", { method: "POST", json: { usernames: names, disabled } }); await done(`${disabled ? "已停用" : "已启用"} ${r.changed} 个用户`); } catch (err) { fail(err); }
  };
  $("#bulkoff").onclick = bulk(true);
  $("#bulkon").onclick = bulk(false);
  main.querySelectorAll("select.role").forEach((sel) => sel.onchange = async () => {
    try { await api(`/api/v1/users/${encodeURIComponent(sel.closest("tr").dataset.u)}`, { method: "PATCH", json: { role: sel.value } }); await done("角色已更改"); } catch (err) { fail(err); }
  });
  main.querySelectorAll("button.reset").forEach((b) => b.onclick = async () => {
    const tr = b.closest("tr");
    try { const r = await api(`/api/v1/users/${encodeURIComponent(tr.dataset.u)}/password`, { method: "POST", json: { new: tr.querySelector("input.newpw").value } }); await done(`密码已重置，已吊销 ${r.tokens_revoked} 个令牌`); } catch (err) { fail(err); }
  });
  $("#uform").onsubmit = async (e) => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(e.target));
    const doc = { username: f.username, password: f.password, role: f.role };
    if (f.employee) doc.employee = f.employee;
    if (f.department) doc.department = Number(f.department);
    try { await api("/api/v1/users", { method: "POST", json: doc }); await done(`已创建用户 ${f.username}`); } catch (err) { fail(err); }
  };
  $("#rform").onsubmit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    try { await api("/api/v1/roles", { method: "POST", json: { role: f.get("role"), scope: f.get("scope"), permissions: f.getAll("perm") } }); await done(`已创建角色 ${f.get("role")}`); } catch (err) { fail(err); }
  };
  main.querySelectorAll("button.delrole").forEach((b) => b.onclick = async () => {
    try { await api(`/api/v1/roles/${encodeURIComponent(b.closest("tr").dataset.r)}`, { method: "DELETE" }); await done("角色已删除"); } catch (err) { fail(err); }
  });
}

async function accountView() {
  const tokens = await api("/api/v1/tokens");
  const mine = tokens.filter((t) => t.username === me.username);
  main.innerHTML = `<h3>我的账户</h3><p>${esc(me.username)} · 角色 ${esc(me.role)} · 数据范围 ${esc(SCOPES[me.scope] || me.scope)}</p>
    <h4>修改密码</h4><form id="pwform" class="search"><input type="password" name="old" placeholder="当前密码" autocomplete="current-password" required>
      <input type="password" name="new" placeholder="新密码（至少8位）" autocomplete="new-password" required minlength="8"><button type="submit">修改密码</button></form>
    <h4>API 令牌</h4><div id="newtoken"></div>
    <form id="tform" class="search"><input name="name" placeholder="令牌名称" required maxlength="64"><label>有效期（天） <input name="ttl_days" type="number" min="1" max="3650" value="90"></label><button type="submit">创建令牌</button></form>
    <table id="tokens"><tr><th>名称</th><th>创建时间</th><th>到期</th><th>状态</th><th></th></tr>
    ${mine.map((t) => `<tr data-id="${esc(t.id)}"><td>${esc(t.name)}</td><td>${time(t.created_at * 1000)}</td><td>${time(t.expires_at * 1000)}</td>
      <td>${t.revoked ? "已吊销" : "有效"}</td><td>${t.revoked ? "" : `<button class="revoke">吊销</button>`}</td></tr>`).join("") || `<tr><td colspan=5 class="muted">无令牌</td></tr>`}</table>
    ${tokens.length > mine.length ? `<p class="muted">其他用户的令牌 ${tokens.length - mine.length} 个（管理员可在此吊销）</p>
      <table id="othertokens"><tr><th>用户</th><th>名称</th><th>到期</th><th>状态</th><th></th></tr>${tokens.filter((t) => t.username !== me.username).map((t) => `<tr data-id="${esc(t.id)}"><td>${esc(t.username)}</td><td>${esc(t.name)}</td><td>${time(t.expires_at * 1000)}</td><td>${t.revoked ? "已吊销" : "有效"}</td><td>${t.revoked ? "" : `<button class="revoke">吊销</button>`}</td></tr>`).join("")}</table>` : ""}`;
  $("#pwform").onsubmit = async (e) => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(e.target));
    try {
      const r = await api("/api/v1/me/password", { method: "POST", json: { old: f.old, new: f.new } });
      sessionStorage.setItem("token", r.token);
      await accountView();
      main.insertAdjacentHTML("afterbegin", `<p class="ok" id="notice">密码已修改，其他 ${r.tokens_revoked} 个令牌已吊销</p>`);
    } catch (err) { showError(err.message); }
  };
  $("#tform").onsubmit = async (e) => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(e.target));
    try {
      const r = await api("/api/v1/tokens", { method: "POST", json: { name: f.name, ttl_days: Number(f.ttl_days) } });
      await accountView();
      $("#newtoken").innerHTML = `<p class="ok">新令牌（只显示这一次，请妥善保存）：<code id="tokenvalue">${esc(r.token)}</code></p>`;
    } catch (err) { showError(err.message); }
  };
  main.querySelectorAll("button.revoke").forEach((b) => b.onclick = async () => {
    try { await api(`/api/v1/tokens/${encodeURIComponent(b.closest("tr").dataset.id)}`, { method: "DELETE" }); await accountView(); } catch (err) { showError(err.message); }
  });
}

async function settingsView() {
  const [sw, th] = await Promise.all([api("/api/v1/behaviours"), api("/api/v1/alerts/thresholds")]);
  const canWrite = me.permissions.includes("words.write");
  main.innerHTML = `<h3>敏感行为</h3><form id="bform">${Object.entries(sw).map(([k, v]) => `<label><input type="checkbox" name="${k}" ${v ? "checked" : ""} ${canWrite ? "" : "disabled"}> ${esc(BEHAVIOURS[k] || k)}</label> `).join("")}</form>
    <h3>超时未回复告警级别</h3><p class="muted">客户消息超过下列时长未回复即告警，逐级通知员工、上级、再上级</p>
    <form id="thform" class="search">${th.reply_thresholds_ms.map((ms, i) => `<label>${i + 1} 级（分钟） <input type="number" name="t" min="1" step="1" value="${ms / 60000}" ${canWrite ? "" : "disabled"}></label>`).join("")}
      ${canWrite ? `<button type="button" id="addlevel">增加一级</button><button type="submit">保存</button>` : ""}</form><div id="thnote"></div>`;
  if (!canWrite) return;
  $("#bform").onchange = async (e) => {
    try { await api("/api/v1/behaviours", { method: "PUT", json: { [e.target.name]: e.target.checked } }); showError(""); } catch (err) { showError(err.message); }
  };
  $("#addlevel").onclick = () => { $("#addlevel").insertAdjacentHTML("beforebegin", `<label>新级别（分钟） <input type="number" name="t" min="1" step="1"></label>`); };
  $("#thform").onsubmit = async (e) => {
    e.preventDefault();
    const values = [...new FormData(e.target).getAll("t")].filter((v) => v !== "").map((v) => Math.round(Number(v) * 60000));
    try {
      const r = await api("/api/v1/alerts/thresholds", { method: "PUT", json: { reply_thresholds_ms: values } });
      showError("");
      $("#thnote").innerHTML = `<p class="ok" id="notice">已保存：${r.reply_thresholds_ms.map((ms) => `${ms / 60000} 分钟`).join("、")}；告警正在按新级别重新计算</p>`;
    } catch (err) { showError(err.message); }
  };
}

async function trailView() {
  const before = hashParams().get("before");
  const page = await api(`/api/v1/trail?limit=100${before ? `&before=${before}` : ""}`);
  main.innerHTML = `<div class="search"><button id="verify">校验完整性</button><span id="verdict"></span></div>
    <table id="trail"><tr><th>#</th><th>时间</th><th>用户</th><th>操作</th><th>对象</th><th>详情</th></tr>
    ${page.entries.map((e) => `<tr><td>${e.index}</td><td>${time(e.at)}</td><td>${esc(e.user)}</td><td>${esc(e.action)}</td><td>${esc(e.target)}</td><td class="detail">${esc(JSON.stringify(e.detail ?? {})).slice(0, 300)}</td></tr>`).join("") || `<tr><td colspan=6 class="muted">无记录</td></tr>`}</table>
    ${page.next_cursor !== null ? `<p><a id="older" href="#/trail?before=${page.next_cursor}">更早的记录</a></p>` : ""}`;
  $("#verify").onclick = async () => {
    $("#verdict").textContent = "校验中…";
    try {
      const r = await api("/api/v1/trail?limit=1&verify=1");
      const v = r.verify;
      $("#verdict").innerHTML = v.ok ? `<span class="ok">完整：${v.entries} 条记录，链与锚点一致</span>` : `<span class="warn">不完整：${esc(v.why || "")}</span>`;
    } catch (err) { showError(err.message); }
  };
}

async function wordsView() {
  const w = await api("/api/v1/words");
  const sw = await api("/api/v1/behaviours");
  const canWrite = me.permissions.includes("words.write");
  main.innerHTML = `<h3>敏感行为</h3>${Object.entries(sw).map(([k, v]) => `<label><input type="checkbox" data-b="${k}" ${v ? "checked" : ""} ${canWrite ? "" : "disabled"}> ${{ push_card: "推送名片", red_packet: "发红包", delete_customer: "删除好友" }[k]}</label> `).join("")}
    <h3>敏感词</h3><table><tr><th>敏感词</th><th>关联词</th><th>类别</th><th>触发次数</th><th>最后触发</th></tr>
    ${w.entries.map((e) => `<tr><td>${esc(e.word)}</td><td>${esc(e.related.join("、"))}</td><td>${esc(e.category)}</td><td>${e.triggers}</td><td>${time(e.last_trigger)}</td></tr>`).join("")}</table>
    <p class="muted">白名单：${esc(w.allow.join("、")) || "无"}</p>
    ${canWrite ? `<form id="wform" class="search"><input name="word" placeholder="敏感词" required><input name="related" placeholder="关联词（逗号分隔，最多10个）">
      <input name="category" placeholder="类别"><select name="applies_to"><option value="employee">员工消息</option><option value="customer">客户消息</option><option value="both">员工和客户</option></select>
      <button type="submit">添加敏感词</button></form>` : ""}`;
  const save = async (entries) => {
    await api("/api/v1/words", { method: "PUT", json: { entries, allow: w.allow } });
    await wordsView();
  };
  const current = () => w.entries.map((e) => ({ word: e.word, related: e.related, category: e.category, severity: e.severity, applies_to: e.applies_to }));
  if (canWrite) {
    main.querySelectorAll("table tr").forEach((tr, i) => {
      if (i === 0) { tr.insertAdjacentHTML("beforeend", "<th></th>"); return; }
      tr.insertAdjacentHTML("beforeend", `<td><button class="del" data-i="${i - 1}">删除</button></td>`);
    });
    main.querySelectorAll("button.del").forEach((b) => b.onclick = () => {
      const entries = current();
      entries.splice(Number(b.dataset.i), 1);
      save(entries).catch((err) => showError(err.message));
    });
    $("#wform").onsubmit = (e) => {
      e.preventDefault();
      const f = Object.fromEntries(new FormData(e.target));
      const related = f.related.split(/[,，、]/).map((x) => x.trim()).filter(Boolean);
      save(current().concat([{ word: f.word.trim(), related, category: f.category || "default", severity: 1, applies_to: f.applies_to }])).catch((err) => showError(err.message));
    };
  }
  main.querySelectorAll("[data-b]").forEach((c) => c.onchange = () => api("/api/v1/behaviours", { method: "PUT", json: { [c.dataset.b]: c.checked } }).catch((err) => showError(err.message)));
}

async function consentView() {
  const rows = await api("/api/v1/consent/events");
  main.innerHTML = `<table><tr><th>规则</th><th>动作</th><th>员工</th><th>客户</th><th>群</th><th>时间</th></tr>
    ${rows.map((e) => `<tr><td>${esc(e.rule)}</td><td>${e.kind === "block_chat" ? "禁止会话" : "移出群聊"}</td><td>${esc(e.employee)}</td><td>${esc(e.customer)}</td><td>${esc(e.roomid)}</td><td>${time(e.time)}</td></tr>`).join("") || "<tr><td colspan=6 class='muted'>无事件</td></tr>"}</table>`;
}


// -- the dialer (rules D-1 … D-12) ------------------------------------------------------------
const REASONS = { sim_daily_cap: "SIM 卡今日已达上限", interval: "拨号间隔未到", number_daily_cap: "该号码今日已拨满", dnc: "黑名单号码",
  outside_hours: "不在外呼时段", no_licence: "坐席无外呼权限", nothing_to_call: "暂无可拨号码", busy: "设备正在通话", no_sim: "无可用 SIM 卡" };
const SETTING_NAMES = { valid_seconds: "有效通话（秒）", rotate_after: "自动换卡（连续通话数）", sim_daily_cap: "每卡每日拨打上限",
  new_sim_cap: "新卡首日上限", interval_s: "拨号间隔（秒）", number_daily_cap: "同一号码每日拨打次数", licences: "已购坐席数",
  reservation_timeout_s: "无通话记录时释放（秒）" };
const charts = [];

async function dialerView() {
  const tab = hashParams().get("tab") || "stats";
  const tabs = [["stats", "通话统计"], ["calls", "通话记录"], ["devices", "设备与SIM卡"], ["seats", "坐席"], ["campaigns", "外呼任务"], ["dnc", "黑名单"], ["settings", "呼叫设置"]];
  main.innerHTML = `<div class="tabs" id="dtabs">${tabs.map(([k, v]) => `<button data-t="${k}" class="${k === tab ? "on" : ""}">${v}</button>`).join("")}</div><div id="dbody"></div>`;
  $("#dtabs").onclick = (e) => { if (e.target.dataset.t) location.hash = `#/dialer?tab=${e.target.dataset.t}`; };
  charts.splice(0).forEach((c) => c.destroy());
  const body = $("#dbody");
  const admin = me.permissions.includes("dialer.admin");
  if (tab === "stats") {
    const today = new Date().toISOString().slice(0, 10);
    const from = hashParams().get("from") || new Date(Date.now() - 29 * 864e5).toISOString().slice(0, 10);
    const to = hashParams().get("to") || today;
    const gran = hashParams().get("g") || "day";
    const who = hashParams().get("employee") || "";
    const st = await api(`/api/v1/dialer/stats?from=${from}&to=${to}&granularity=${gran}${who ? `&employee=${encodeURIComponent(who)}` : ""}`);
    const o = st.overview;
    const rate = o.calls ? Math.round((100 * o.connected) / o.calls) : 0;
    body.innerHTML = `<form class="search" id="sform"><label>从 <input type="date" name="from" value="${from}"></label><label>到 <input type="date" name="to" value="${to}"></label>
      <select name="g">${[["day", "按日"], ["week", "按周"], ["month", "按月"]].map(([k, v]) => `<option value="${k}" ${k === gran ? "selected" : ""}>${v}</option>`).join("")}</select>
      <input name="employee" placeholder="员工（逗号分隔）" value="${esc(who)}"><button>查询</button></form>
      <div class="kpis" id="kpis"><div>呼叫总数<b>${o.calls}</b></div><div>接通<b>${o.connected}</b></div><div>接通率<b>${rate}%</b></div><div>有效通话<b>${o.valid}</b></div><div>通话时长<b>${Math.round(o.talk / 60)} 分</b></div></div>
      <div class="charts"><div class="panel"><h4>趋势</h4><canvas id="trend"></canvas></div><div class="panel"><h4>排行（有效通话）</h4><canvas id="rank"></canvas></div></div>
      <table id="ranking"><tr><th>排名</th><th>员工</th><th>呼叫</th><th>接通</th><th>有效</th><th>时长（秒）</th></tr>
      ${st.ranking.map((r, i) => `<tr><td>${i + 1}</td><td>${esc(r.employee)}</td><td>${r.calls}</td><td>${r.connected}</td><td>${r.valid}</td><td>${r.talk}</td></tr>`).join("") || "<tr><td colspan=6 class='muted'>无通话</td></tr>"}</table>`;
    $("#sform").onsubmit = (e) => { e.preventDefault(); const f = new FormData(e.target); location.hash = `#/dialer?tab=stats&from=${f.get("from")}&to=${f.get("to")}&g=${f.get("g")}${f.get("employee") ? `&employee=${encodeURIComponent(f.get("employee"))}` : ""}`; };
    if (window.Chart) {
      const buckets = [...new Set(Object.values(st.trend).flatMap((b) => Object.keys(b)))].sort();
      const sum = (k) => buckets.map((b) => Object.values(st.trend).reduce((a, emp) => a + ((emp[b] || {})[k] || 0), 0));
      charts.push(new window.Chart($("#trend"), { type: "line", data: { labels: buckets, datasets: [
        { label: "呼叫", data: sum("calls"), borderColor: "#1f3b57" }, { label: "接通", data: sum("connected"), borderColor: "#1f7a3d" },
        { label: "有效", data: sum("valid"), borderColor: "#c07000" }] }, options: { animation: false } }));
      const top = st.ranking.slice(0, 10);
      charts.push(new window.Chart($("#rank"), { type: "bar", data: { labels: top.map((r) => r.employee), datasets: [
        { label: "有效通话", data: top.map((r) => r.valid), backgroundColor: "#1f7a3d" }] }, options: { animation: false, indexAxis: "y" } }));
    } else {
      body.insertAdjacentHTML("afterbegin", `<p class="muted">图表库未安装（Debian 软件包 libjs-chart.js），仅显示表格。</p>`);
    }
  } else if (tab === "calls") {
    const q = hashParams();
    const qs = new URLSearchParams();
    for (const k of ["number", "direction", "connected", "min_talk", "max_talk", "employee"]) if (q.get(k)) qs.set(k, q.get(k));
    const page = await api(`/api/v1/dialer/calls?${qs}`);
    body.innerHTML = `<form class="search" id="cform"><input name="number" placeholder="号码" value="${esc(q.get("number") || "")}">
      <select name="direction"><option value="">全部</option><option value="out" ${q.get("direction") === "out" ? "selected" : ""}>呼出</option><option value="in" ${q.get("direction") === "in" ? "selected" : ""}>呼入</option></select>
      <select name="connected"><option value="">全部状态</option><option value="true" ${q.get("connected") === "true" ? "selected" : ""}>已接通</option><option value="false" ${q.get("connected") === "false" ? "selected" : ""}>未接通</option></select>
      <input name="min_talk" type="number" min="0" placeholder="通话 ≥ 秒" value="${esc(q.get("min_talk") || "")}"><input name="max_talk" type="number" min="0" placeholder="通话 ≤ 秒" value="${esc(q.get("max_talk") || "")}">
      <input name="employee" placeholder="员工" value="${esc(q.get("employee") || "")}"><button>筛选</button></form>
      <table id="calls"><tr><th>时间</th><th>方向</th><th>号码</th><th>员工</th><th>结果</th><th>通话（秒）</th><th>有效</th></tr>
      ${page.calls.map((c) => `<tr><td>${time(c.started_at)}</td><td>${c.direction === "out" ? "呼出" : "呼入"}</td><td>${esc(c.number)}</td><td>${esc(c.employee)}</td><td>${esc(c.outcome)}</td><td>${c.talk_seconds}</td><td>${c.valid ? "是" : ""}</td></tr>`).join("") || "<tr><td colspan=7 class='muted'>无记录</td></tr>"}</table>`;
    $("#cform").onsubmit = (e) => { e.preventDefault(); const f = new URLSearchParams([...new FormData(e.target)].filter(([, v]) => v)); f.set("tab", "calls"); location.hash = `#/dialer?${f}`; };
  } else if (tab === "devices") {
    const devs = await api("/api/v1/dialer/devices");
    body.innerHTML = `<table id="devices"><tr><th>设备</th><th>坐席</th><th>SIM 卡</th><th>今日 / 上限</th><th>状态</th><th>累计呼叫 / 接通</th></tr>
      ${devs.flatMap((d) => d.sims.map((s, i) => `<tr>${i === 0 ? `<td rowspan="${d.sims.length}">${esc(d.name)}<br><span class="muted">${esc(d.id)}</span></td><td rowspan="${d.sims.length}">${esc(d.seat || "—")}</td>` : ""}
        <td>${esc(s.number)} ${d.current === s.id ? "（工作中）" : ""}</td><td>${s.today} / ${s.cap_today}</td><td>${esc(s.state)}</td><td>${s.calls} / ${s.connected}</td></tr>`)).join("") || "<tr><td colspan=6 class='muted'>无设备</td></tr>"}</table>`;
  } else if (tab === "seats") {
    const s = await api("/api/v1/dialer/seats");
    body.innerHTML = `<p>已购坐席 <b>${s.licences}</b>，已开通外呼 <b>${s.used}</b>（D-6：可开通数为 0 时无法开启）</p>
      <table id="seats"><tr><th>员工</th><th>设备</th><th>外呼权限</th></tr>${s.seats.map((x) => `<tr data-e="${esc(x.employee)}"><td>${esc(x.employee)}</td><td>${esc(x.device || "—")}</td>
      <td>${x.outbound ? "已开启" : "未开启"} ${admin ? `<button class="toggle" data-on="${x.outbound ? "" : "1"}" ${!x.outbound && s.used >= s.licences ? "disabled" : ""}>${x.outbound ? "关闭外呼" : "开启外呼"}</button>` : ""}</td></tr>`).join("")}</table>`;
    body.querySelectorAll("button.toggle").forEach((b) => b.onclick = async () => {
      const tr = b.closest("tr");
      const seat = s.seats.find((x) => x.employee === tr.dataset.e);
      try { await api("/api/v1/dialer/seats", { method: "PUT", json: { seats: [{ employee: seat.employee, device: seat.device, outbound: !!b.dataset.on }] } }); await dialerView(); } catch (err) { showError(err.message); }
    });
  } else if (tab === "campaigns") {
    const cs = await api("/api/v1/dialer/campaigns");
    body.innerHTML = `<table id="campaigns"><tr><th>任务</th><th>优先级</th><th>号码</th><th>状态</th><th>进度</th></tr>${cs.map((c) => `<tr><td>${esc(c.name)}</td><td>${c.priority}</td><td>${c.total}</td><td>${c.state === "active" ? "进行中" : "已暂停"}</td>
      <td>${Object.entries(c.targets).map(([k, v]) => `${esc({ queued: "待拨", reserved: "拨号中", done: "已接通", failed: "未接通", dnc: "黑名单" }[k] || k)} ${v}`).join(" · ")}</td></tr>`).join("") || "<tr><td colspan=5 class='muted'>无任务</td></tr>"}</table>`;
  } else if (tab === "dnc") {
    const rows = await api("/api/v1/dialer/dnc");
    body.innerHTML = `<p class="muted">D-11：黑名单对所有任务和员工生效。</p><table id="dnc"><tr><th>号码</th><th>原因</th><th>添加人</th><th>时间</th></tr>${rows.map((r) => `<tr><td>${esc(r.number)}</td><td>${esc(r.reason)}</td><td>${esc(r.by)}</td><td>${time(r.added)}</td></tr>`).join("") || "<tr><td colspan=4 class='muted'>无</td></tr>"}</table>
      ${admin ? `<form class="search" id="dncform"><input name="number" placeholder="号码" required><input name="reason" placeholder="原因"><button>加入黑名单</button></form>` : ""}`;
    if (admin) $("#dncform").onsubmit = async (e) => { e.preventDefault(); const f = new FormData(e.target); try { await api("/api/v1/dialer/dnc", { method: "POST", json: { numbers: [f.get("number")], reason: f.get("reason") } }); await dialerView(); } catch (err) { showError(err.message); } };
  } else if (tab === "settings") {
    const st = await api("/api/v1/dialer/settings");
    body.innerHTML = `<form id="setform"><table><tr><th>设置</th><th>值</th><th>规则与建议（seed 003）</th></tr>
      ${Object.entries(SETTING_NAMES).map(([k, v]) => `<tr><td>${v}</td><td><input name="${k}" type="number" min="${st.advice[k].min}" max="${st.advice[k].max}" value="${st.settings[k]}" ${admin ? "" : "disabled"}></td><td><span class="advice">${esc(st.advice[k].rule)} · ${esc(st.advice[k].advice)}</span></td></tr>`).join("")}
      <tr><td>时区</td><td><input name="timezone" value="${esc(st.settings.timezone)}" ${admin ? "" : "disabled"}></td><td class="advice">D-12：每日上限与外呼时段都按此时区计算</td></tr>
      <tr><td>外呼时段</td><td><input name="hours" value="${esc(st.settings.hours.map((h) => h.join("-")).join(","))}" ${admin ? "" : "disabled"}></td><td class="advice">如 09:00-12:00,13:30-20:00</td></tr></table>
      ${st.warnings.map((w) => `<p class="warn">⚠ ${esc(w)}</p>`).join("")}${admin ? "<button>保存</button>" : ""}</form>`;
    if (admin) $("#setform").onsubmit = async (e) => {
      e.preventDefault();
      const f = Object.fromEntries(new FormData(e.target));
      const doc = {};
      for (const k of Object.keys(SETTING_NAMES)) doc[k] = Number(f[k]);
      doc.timezone = f.timezone;
      doc.hours = f.hours.split(/[,，]/).map((w) => w.trim()).filter(Boolean).map((w) => w.split("-"));
      try { await api("/api/v1/dialer/settings", { method: "PUT", json: doc }); await dialerView(); } catch (err) { showError(err.message); }
    };
  }
}

// incoming-call pop-ups (D-9): the server's event stream, read with fetch (it carries the token)
let popupStream = null;
async function listenPopups() {
  if (popupStream || !me || !me.permissions.includes("dialer.read")) return;
  popupStream = new AbortController();
  try {
    const r = await fetch("/api/v1/dialer/popups/stream", { headers: { Authorization: `Bearer ${sessionStorage.getItem("token")}` }, signal: popupStream.signal });
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = block.split("\n").find((l) => l.startsWith("data: "));
        if (data) showPopup(JSON.parse(data.slice(6)));
      }
    }
  } catch { /* signed out or the server went away */ }
  popupStream = null;
}
function showPopup(p) {
  const c = p.contact;
  const el = document.createElement("div");
  el.className = "popup";
  el.dataset.seq = p.seq;
  el.innerHTML = `<button aria-label="关闭">×</button><b>来电</b> ${esc(p.number || "未知号码")}<br>${c ? `客户：${esc(c.name)}${c.customer ? ` · ${esc(c.customer)}` : ""}` : "<span class='muted'>无客户档案</span>"}<br><span class="muted">${esc(p.rule)} · ${time(p.at)}</span>`;
  el.querySelector("button").onclick = () => el.remove();
  $("#popups").prepend(el);
}

// -- customers, pools, prospecting, opportunities, inheritance (P-1 … P-8, I-1 … I-3) ----------------
const XFER_STATES = { pending: "待发送", waiting: "等待接替", done: "接替完毕", refused: "客户拒绝", limit: "接替成员客户已达上限",
  no_record: "无接替记录", failed: "失败", local_refused: "未发送（90天内已转接2次）", scheduled: "明日继续", sending: "发送中" };

// media of archived messages: fetched with the session's token (every read is on the trail)
const MEDIA_STATES = { pending: "尚未获取", too_large: "文件过大，未获取", md5_mismatch: "校验不符", bad_fileid: "文件不存在",
  media_expired: "已过期", vendor_error: "获取失败", undefined: "尚未获取" };
async function mediaBlob(seq, query = "") {
  const r = await fetch(`/api/v1/messages/${seq}/media/0${query}`, { headers: { Authorization: `Bearer ${sessionStorage.getItem("token")}` } });
  if (r.status === 409) throw new Error((await r.json()).detail);
  if (!r.ok) throw new Error(`HTTP ${r.status}`);
  return URL.createObjectURL(await r.blob());
}

function wireMedia(root) {
  root.querySelectorAll(".media[data-show=img]:not(.loaded)").forEach((el) => {
    el.classList.add("loaded");
    if (el.dataset.state !== "stored") { el.insertAdjacentHTML("beforeend", ` <span class="muted">（${MEDIA_STATES[el.dataset.state] || esc(el.dataset.state)}）</span>`); return; }
    mediaBlob(el.dataset.seq).then((url) => { el.innerHTML = `<img class="thumb" alt="图片" src="${url}">`; })
      .catch((e) => { el.insertAdjacentHTML("beforeend", ` <span class="muted">（${esc(e.message)}）</span>`); });
  });
  root.querySelectorAll(".media[data-show=video] .playmedia").forEach((b) => {
    b.onclick = async () => {
      const el = b.closest(".media");
      try { el.innerHTML = `<video controls class="thumb" src="${await mediaBlob(el.dataset.seq)}"></video>`; } catch (e) { showError(e.message); }
    };
  });
  root.querySelectorAll(".media[data-show=voice] .playvoice").forEach((b) => {
    b.onclick = async () => {
      const el = b.closest(".media");
      try {
        b.replaceWith(Object.assign(document.createElement("audio"), { controls: true, className: "voice", src: await mediaBlob(el.dataset.seq, "?format=wav") }));
      } catch (e) { showError(e.message); }
    };
  });
  root.querySelectorAll(".getmedia").forEach((b) => {
    b.onclick = () => download(`/api/v1/messages/${b.dataset.seq}/media/0`, b.dataset.name).catch((e) => showError(e.message));
  });
}

async function download(path, name) {
  const r = await fetch(path, { headers: { Authorization: `Bearer ${sessionStorage.getItem("token")}` } });
  if (!r.ok) throw new Error(`HTTP ${r.status}`);
  const url = URL.createObjectURL(await r.blob());
  const a = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(a); a.click(); a.remove(); URL.revokeObjectURL(url);
}

async function customersView() {
  const tab = hashParams().get("tab") || "mine";
  const admin = me.permissions.includes("customers.admin");
  const tabs = [["mine", "我的客户"], ["pools", "公海"], ["opps", "商机"]].concat(admin ? [["seats", "拓客坐席"], ["transfer", "客户继承"]] : []);
  main.innerHTML = `<div class="tabs" id="ctabs">${tabs.map(([k, v]) => `<button data-t="${k}" class="${k === tab ? "on" : ""}">${v}</button>`).join("")}</div><div id="cbody"></div>`;
  $("#ctabs").onclick = (e) => { if (e.target.dataset.t) location.hash = `#/customers?tab=${e.target.dataset.t}`; };
  const body = $("#cbody");
  if (tab === "mine") {
    const q = hashParams();
    const qs = new URLSearchParams({ limit: "200" });
    if (me.employee && !admin) qs.set("owner", me.employee);
    for (const k of ["q", "status", "tag"]) if (q.get(k)) qs.set(k, q.get(k));
    const st = await api("/api/v1/customers/settings");
    const page = await api(`/api/v1/customers?${qs}`);
    body.innerHTML = `<form class="search" id="mform"><input name="q" placeholder="姓名或手机号" value="${esc(q.get("q") || "")}">
      <select name="status"><option value="">全部跟进状态</option>${st.statuses.map((x) => `<option ${x === q.get("status") ? "selected" : ""}>${esc(x)}</option>`).join("")}</select>
      <select name="tag"><option value="">全部标签</option>${st.tags.map((x) => `<option ${x === q.get("tag") ? "selected" : ""}>${esc(x)}</option>`).join("")}</select><button>筛选</button></form>
      <table id="mycustomers"><tr><th></th><th>客户</th><th>手机号</th><th>跟进状态</th><th>来源</th><th>标签</th><th>负责人</th><th>公海</th><th>最近联系</th></tr>
      ${page.customers.map((c) => `<tr data-id="${esc(c.id)}"><td>${c.pool && c.owner === me.employee ? `<input type="checkbox" class="back" value="${esc(c.id)}" data-pool="${esc(c.pool)}">` : ""}</td><td>${esc(c.name)}</td><td>${esc(c.phone)}</td><td>${esc(c.status)}</td><td>${esc(c.source)}</td><td>${esc((c.tags || []).join("、"))}</td><td>${esc(c.owner || "—")}</td><td>${esc(c.pool || "")}</td><td>${time(c.last_contact)}</td></tr>`).join("") || "<tr><td colspan=9 class='muted'>无客户</td></tr>"}</table>
      <p><button id="giveback">退回公海</button> <span id="givebackresult"></span></p>`;
    $("#mform").onsubmit = (e) => { e.preventDefault(); const f = new URLSearchParams([...new FormData(e.target)].filter(([, v]) => v)); f.set("tab", "mine"); location.hash = `#/customers?${f}`; };
    $("#giveback").onclick = async () => {
      const byPool = {};
      body.querySelectorAll(".back:checked").forEach((x) => { (byPool[x.dataset.pool] = byPool[x.dataset.pool] || []).push(x.value); });
      try {
        let n = 0;
        for (const [pool, ids] of Object.entries(byPool)) n += (await api(`/api/v1/pools/${pool}/returns`, { method: "POST", json: { customers: ids } })).returned.length;
        await customersView();
        $("#givebackresult").textContent = `已退回 ${n} 位客户`;
      } catch (err) { showError(err.message); }
    };
  } else if (tab === "pools") {
    const pools = await api("/api/v1/pools");
    const pid = hashParams().get("pool") || (pools[0] && pools[0].id);
    const pool = pools.find((p) => p.id === pid);
    body.innerHTML = `<div class="tabs" id="plist">${pools.map((p) => `<button data-p="${esc(p.id)}" class="${p.id === pid ? "on" : ""}">${esc(p.name)}（${p.unclaimed}）</button>`).join("") || "<span class='muted'>无公海</span>"}</div><div id="pbody"></div>`;
    $("#plist").onclick = (e) => { if (e.target.dataset.p) location.hash = `#/customers?tab=pools&pool=${e.target.dataset.p}`; };
    if (!pool) return;
    const rows = (await api(`/api/v1/pools/${pid}/customers?limit=500`)).customers;
    const rule = { claim: "成员领取", assign: "管理员分配", both: "领取和分配" }[pool.rule];
    $("#pbody").innerHTML = `<p>分配规则：${rule} · 持有上限：${pool.hold_cap ?? "不限"} · 每日领取上限：${pool.daily_cap ?? "不限"} · 我持有：${pool.held_by_me ?? "—"}</p>
      <div id="claimresult"></div>
      <table id="poolcustomers"><tr><th><input type="checkbox" id="all"></th><th>客户</th><th>手机号</th><th>企业</th><th>来源</th></tr>
      ${rows.map((c) => `<tr data-id="${esc(c.id)}"><td><input type="checkbox" class="pick" value="${esc(c.id)}"></td><td>${esc(c.name)}</td><td>${esc(c.phone)}</td><td>${esc(c.company || "")}</td><td>${esc(c.source)}</td></tr>`).join("") || "<tr><td colspan=5 class='muted'>公海中暂无客户</td></tr>"}</table>
      <p><button id="claim">领取所选</button> ${admin ? `<input id="assignee" placeholder="分配给（员工ID）"> <button id="assign">分配所选</button>` : ""}</p>
      ${admin ? `<h4>导入客户（.xlsx / .csv，最多 5000 行）</h4><form id="importform"><input type="file" name="file" accept=".xlsx,.csv" required> <button>导入</button> <a href="#" id="tpl">下载模板</a></form><div id="importreport"></div>` : ""}`;
    $("#all").onchange = (e) => body.querySelectorAll(".pick").forEach((x) => { x.checked = e.target.checked; });
    const picked = () => [...body.querySelectorAll(".pick:checked")].map((x) => x.value);
    const show = (out) => {
      $("#claimresult").innerHTML = `<p class="ok">已领取 ${out.claimed.length} 位客户</p>${out.refused.length ? `<table id="refusals"><tr><th>客户</th><th>规则</th><th>原因</th></tr>${out.refused.map((r) => `<tr><td>${esc(r.customer)}</td><td>${esc(r.rule)}</td><td>${esc(r.reason)}</td></tr>`).join("")}</table>` : ""}`;
      out.claimed.forEach((id) => { const tr = body.querySelector(`#poolcustomers tr[data-id="${id}"]`); if (tr) tr.remove(); });
    };
    $("#claim").onclick = async () => { try { show(await api(`/api/v1/pools/${pid}/claims`, { method: "POST", json: { customers: picked() } })); } catch (err) { showError(err.message); } };
    if (admin) {
      $("#assign").onclick = async () => { try { show(await api(`/api/v1/pools/${pid}/assign`, { method: "POST", json: { member: $("#assignee").value, customers: picked() } })); } catch (err) { showError(err.message); } };
      $("#tpl").onclick = (e) => { e.preventDefault(); download("/api/v1/pools/import-template.xlsx", "客户导入模板.xlsx").catch((err) => showError(err.message)); };
      $("#importform").onsubmit = async (e) => {
        e.preventDefault();
        const r = await fetch(`/api/v1/pools/${pid}/imports`, { method: "POST", body: new FormData(e.target), headers: { Authorization: `Bearer ${sessionStorage.getItem("token")}` } });
        const out = await r.json();
        if (!r.ok) { showError(`${out.error}: ${out.detail}`); return; }
        showError("");
        const name = { accepted: "已导入", duplicate: "重复", invalid: "无效" };
        $("#importreport").innerHTML = `<p id="importsummary">共 ${out.rows} 行：导入 ${out.accepted}，重复 ${out.duplicates}，无效 ${out.invalid} · <a href="#" id="dl">下载导入结果</a></p>
          <table id="reportrows"><tr><th>行号</th><th>结果</th><th>说明</th></tr>${out.report.filter((x) => x.status !== "accepted").map((x) => `<tr data-row="${x.row}"><td>${x.row}</td><td>${name[x.status]}</td><td>${esc(x.reason || "")}</td></tr>`).join("")}</table>`;
        $("#dl").onclick = (ev) => { ev.preventDefault(); download(`/api/v1/imports/${out.id}/report.xlsx`, "导入结果.xlsx").catch((err) => showError(err.message)); };
      };
    }
  } else if (tab === "opps") {
    const by = await api("/api/v1/opportunities");
    body.innerHTML = `<div class="charts">${Object.entries(by).map(([stage, list]) => `<div class="panel"><h4>${esc(stage)}（${list.length}）</h4>${list.map((o) => `<div>${esc(o.name)} · ${(o.amount / 100).toFixed(2)} 元</div>`).join("")}</div>`).join("")}</div>`;
  } else if (tab === "seats") {
    const s = await api("/api/v1/prospect/seats");
    body.innerHTML = `<p>线索包余额：<b>${s.lead_package}</b>（坐席开启时领取消耗线索包，关闭时不消耗）</p>
      <form id="seatform" class="search"><input name="members" placeholder="员工（空格分隔，批量设置）" required><select name="on"><option value="1">开启坐席</option><option value="">关闭坐席</option></select>
      <input name="daily_cap" type="number" min="0" max="1000" placeholder="单日上限（≤1000）"><input name="monthly_cap" type="number" min="0" max="10000" placeholder="每月上限（≤10000）"><button>保存</button></form>
      <table id="seats"><tr><th>员工</th><th>拓客坐席</th><th>单日上限</th><th>每月上限</th></tr>
      ${s.seats.map((x) => `<tr><td>${esc(x.member)}</td><td>${x.on ? "开启" : "关闭"}</td><td>${x.daily_cap}</td><td>${x.monthly_cap}</td></tr>`).join("") || "<tr><td colspan=4 class='muted'>无</td></tr>"}</table>`;
    $("#seatform").onsubmit = async (e) => {
      e.preventDefault();
      const f = Object.fromEntries(new FormData(e.target));
      const seat = (m) => ({ member: m, on: !!f.on, ...(f.daily_cap ? { daily_cap: Number(f.daily_cap) } : {}), ...(f.monthly_cap ? { monthly_cap: Number(f.monthly_cap) } : {}) });
      try { await api("/api/v1/prospect/seats", { method: "PUT", json: { seats: f.members.split(/\s+/).filter(Boolean).map(seat) } }); await customersView(); } catch (err) { showError(err.message); }
    };
  } else if (tab === "transfer") {
    const jid = hashParams().get("job");
    if (jid) {
      const job = await api(`/api/v1/transfers/${jid}`);
      const rows = Object.entries(job.customers);
      body.innerHTML = `<h4>${job.kind === "on_job" ? "在职继承" : "离职继承"}：${esc(job.from)} → ${esc(job.to)} · <span id="jobstate">${job.state === "done" ? "已完成" : "进行中"}</span></h4>
        <button id="poll">刷新进度</button>
        <table id="xfercustomers"><tr><th>客户</th><th>状态</th><th>说明</th></tr>${rows.map(([ext, c]) => `<tr data-ext="${esc(ext)}"><td>${esc(ext)}</td><td class="st">${esc(XFER_STATES[c.state] || c.state)}</td><td>${c.state === "waiting" && c.until ? `等待至 ${time(c.until)}` : esc(c.reason || (c.errcode ? `错误码 ${c.errcode}` : ""))}</td></tr>`).join("")}</table>
        <p>群聊：${Object.values(job.groups).length ? Object.entries(Object.values(job.groups).reduce((a, g) => ({ ...a, [g.state]: (a[g.state] || 0) + 1 }), {})).map(([k, v]) => `${esc(XFER_STATES[k] || k)} ${v}`).join(" · ") : "无"}</p>`;
      $("#poll").onclick = async () => { try { await api(`/api/v1/transfers/${jid}/poll`, { method: "POST" }); await customersView(); } catch (err) { showError(err.message); } };
      return;
    }
    const jobs = await api("/api/v1/transfers");
    body.innerHTML = `<form id="xform" class="search"><select name="kind"><option value="on_job">在职继承</option><option value="resigned">离职继承</option></select>
      <input name="from" placeholder="原跟进员工" required> <button type="button" id="loadcands">列出客户和群</button><input name="to" placeholder="接替员工" required>
      <textarea name="customers" placeholder="客户 external_userid，每行一个" rows="3"></textarea><textarea name="groups" placeholder="客户群 chat_id，每行一个" rows="3"></textarea>
      <input name="message" placeholder="转接提示语（在职，最多200字）" maxlength="200"><button>开始继承</button></form>
      <table id="xferjobs"><tr><th>继承</th><th>原员工 → 接替</th><th>客户</th><th>状态</th></tr>${jobs.map((j) => `<tr><td><a href="#/customers?tab=transfer&job=${esc(j.id)}">${esc(j.id)}</a></td><td>${esc(j.from)} → ${esc(j.to)}</td><td>${Object.entries(j.customers).map(([k, v]) => `${esc(XFER_STATES[k] || k)} ${v}`).join(" · ")}</td><td>${j.state === "done" ? "已完成" : "进行中"}</td></tr>`).join("")}</table>`;
    $("#loadcands").onclick = async () => {
      try {
        const c = await api(`/api/v1/transfers/candidates?employee=${encodeURIComponent($("#xform input[name=from]").value)}`);
        $("#xform textarea[name=customers]").value = c.customers.map((x) => x.external_userid).join("\n");
        $("#xform textarea[name=groups]").value = c.groups.map((x) => x.chat_id).join("\n");
        showError("");
      } catch (err) { showError(err.message); }
    };
    $("#xform").onsubmit = async (e) => {
      e.preventDefault();
      const f = Object.fromEntries(new FormData(e.target));
      const lines = (v) => v.split(/\s+/).map((x) => x.trim()).filter(Boolean);
      const doc = { kind: f.kind, from: f.from, to: f.to, customers: lines(f.customers), groups: lines(f.groups) };
      if (f.message && f.kind === "on_job") doc.message = f.message;
      try { const job = await api("/api/v1/transfers", { method: "POST", json: doc }); location.hash = `#/customers?tab=transfer&job=${job.id}`; } catch (err) { showError(err.message); }
    };
  }
}

// -- mass messaging (Q-0 … Q-8) ------------------------------------------------------------------------
const SEND_STATES = { not_started: "未开始", pushing: "发送中", running: "进行中", done: "已完成", failed: "已失败", cancelled: "已取消" };
const RECIPIENT_STATES = { reserved: "待发送", sent: "已送达", not_sendable: "无法发送", not_a_friend: "非好友", quota_used_elsewhere: "已收到其他群发",
  expired: "超时未执行", cancelled: "已取消" };

function refusalTable(id, rows) {
  return rows.length ? `<table id="${id}"><tr><th>接收者</th><th>规则</th><th>原因</th></tr>${rows.map((r) => `<tr><td>${esc(r.recipient)}</td><td>${esc(r.rule)}</td><td>${esc(r.reason)}</td></tr>`).join("")}</table>` : "";
}
const lines = (v) => (v || "").split(/\s+/).map((x) => x.trim()).filter(Boolean);

async function messagingTabs(tab, admin) {
  const body = $("#mbody");
  if (tab === "moments") {
    body.innerHTML = `<form id="momentform" class="search"><input name="senders" placeholder="发表员工（空格分隔）" value="${esc(me.employee || "")}">
      <input name="tags" placeholder="可见标签（可选）"><textarea name="text" rows="3" maxlength="2000" placeholder="朋友圈内容（最多 2000 字）"></textarea><button>发表</button></form><div id="momentresult"></div>`;
    $("#momentform").onsubmit = async (e) => {
      e.preventDefault();
      const f = Object.fromEntries(new FormData(e.target));
      try {
        const m = await api("/api/v1/moments", { method: "POST", json: { senders: lines(f.senders), tags: lines(f.tags), text: f.text } });
        $("#momentresult").innerHTML = `<p id="momentreach">可见客户 ${m.reached.length} 位 · ${esc(m.state === "done" ? "已发表" : m.state)}</p>${refusalTable("momentrefusals", m.refused)}`;
      } catch (err) { showError(err.message); }
    };
  } else if (tab === "invites") {
    body.innerHTML = `<form id="inviteform" class="search"><input name="title" maxlength="20" placeholder="消息标题（最多 20 字）" required>
      <input name="content" maxlength="50" placeholder="群发内容（最多 50 字）"><input name="tags" placeholder="客户标签（最多 10 个，空格分隔）" required>
      <select name="match"><option value="any">包含任意标签</option><option value="all">包含全部标签</option></select>
      <textarea name="groups" rows="3" placeholder="每行：群 chat_id 二维码 media_id（人满 200 换下一个群）" required></textarea>
      <label><input type="checkbox" name="filter_joined" checked> 过滤已在群中的客户</label><button>创建</button></form><div id="inviteresult"></div>`;
    $("#inviteform").onsubmit = async (e) => {
      e.preventDefault();
      const f = Object.fromEntries(new FormData(e.target));
      const groups = (f.groups || "").split("\n").map((l) => l.trim().split(/\s+/)).filter((p) => p.length === 2).map(([chat_id, qr_media_id]) => ({ chat_id, qr_media_id }));
      try {
        const inv = await api("/api/v1/tag-invites", { method: "POST", json: { title: f.title, content: f.content, tags: lines(f.tags), match: f.match, groups, filter_joined: !!f.filter_joined } });
        $("#inviteresult").innerHTML = `<table id="invitegroups"><tr><th>群</th><th>邀请</th><th>任务</th></tr>${inv.sends.map((p) => `<tr><td>${esc(p.group)}</td><td>${p.accepted.length}</td><td><a href="#/messaging?send=${esc(p.send)}">${esc(p.send)}</a></td></tr>`).join("")}</table>${refusalTable("inviterefusals", inv.refused)}`;
      } catch (err) { showError(err.message); }
    };
  } else if (tab === "channels") {
    const chans = await api("/api/v1/channels");
    body.innerHTML = `${admin ? `<form id="channelform" class="search"><input name="name" maxlength="30" placeholder="渠道名称" required><input name="employees" placeholder="员工（空格分隔）" required>
      <input name="tags" placeholder="自动打标签（可选）"><textarea name="welcome" rows="2" maxlength="520" placeholder="渠道欢迎语（可插入 %NICKNAME%，最多 500 字）"></textarea><button>新建渠道活码</button></form>
      <form id="defaultwelcome" class="search"><textarea name="text" rows="2" placeholder="默认欢迎语"></textarea><button>保存默认欢迎语</button></form>` : ""}
      <table id="channels"><tr><th>渠道</th><th>员工</th><th>标签</th><th>活码</th><th>添加客户</th></tr>${chans.map((c) => `<tr><td>${esc(c.name)}</td><td>${esc(c.employees.join("、"))}</td><td>${esc(c.tags.join("、"))}</td><td>${c.qr_code ? `<a href="${esc(c.qr_code)}" target="_blank" rel="noopener">二维码</a>` : "—"}</td><td>${c.added}</td></tr>`).join("") || "<tr><td colspan=5 class='muted'>无渠道</td></tr>"}</table>`;
    if (admin) {
      $("#channelform").onsubmit = async (e) => {
        e.preventDefault();
        const f = Object.fromEntries(new FormData(e.target));
        const doc = { name: f.name, employees: lines(f.employees), tags: lines(f.tags) };
        if (f.welcome) doc.welcome = { text: f.welcome };
        try { await api("/api/v1/channels", { method: "POST", json: doc }); await messagingView(); } catch (err) { showError(err.message); }
      };
      $("#defaultwelcome").onsubmit = async (e) => {
        e.preventDefault();
        try { await api("/api/v1/welcome/default", { method: "PUT", json: { text: new FormData(e.target).get("text") } }); showError(""); } catch (err) { showError(err.message); }
      };
    }
  } else if (tab === "materials") {
    const mats = await api("/api/v1/materials");
    const kinds = { article: "图文", video: "视频", script: "话术" };
    body.innerHTML = `${admin ? `<form id="materialform" class="search"><select name="kind"><option value="article">图文</option><option value="video">视频</option><option value="script">话术</option></select>
      <input name="title" maxlength="64" placeholder="标题" required><input name="category" placeholder="分类"><input name="url" placeholder="链接（图文）"><input name="media_id" placeholder="media_id（视频）">
      <textarea name="text" rows="2" placeholder="话术内容"></textarea><button>添加素材</button></form>` : ""}
      <table id="materials"><tr><th>类型</th><th>标题</th><th>分类</th><th>可见范围</th><th>使用次数</th></tr>${mats.map((m) => `<tr><td>${kinds[m.kind]}</td><td>${esc(m.title)}</td><td>${esc(m.category)}</td><td>${m.scope === "all" ? "全部员工" : esc(m.scope.join("、"))}</td><td>${m.shares}</td></tr>`).join("") || "<tr><td colspan=5 class='muted'>无素材</td></tr>"}</table>`;
    if (admin) $("#materialform").onsubmit = async (e) => {
      e.preventDefault();
      const f = Object.fromEntries([...new FormData(e.target)].filter(([, v]) => v));
      try { await api("/api/v1/materials", { method: "POST", json: f }); await messagingView(); } catch (err) { showError(err.message); }
    };
  }
}

async function messagingView() {
  const sid = hashParams().get("send");
  const admin = me.permissions.includes("messaging.admin");
  const tab = hashParams().get("tab") || "sends";
  if (!sid && tab !== "sends") {
    const tabs = [["sends", "群发"], ["moments", "朋友圈"], ["invites", "标签拉群"], ["channels", "渠道活码"], ["materials", "素材库"]];
    main.innerHTML = `<div class="tabs" id="mtabs">${tabs.map(([k, v]) => `<button data-t="${k}" class="${k === tab ? "on" : ""}">${v}</button>`).join("")}</div><div id="mbody"></div>`;
    $("#mtabs").onclick = (e) => { if (e.target.dataset.t) location.hash = `#/messaging?tab=${e.target.dataset.t}`; };
    return messagingTabs(tab, admin);
  }
  if (sid) {
    const s = await api(`/api/v1/mass-sends/${sid}`);
    main.innerHTML = `<h3>群发任务 <span id="sendstate">${esc(SEND_STATES[s.state] || s.state)}</span></h3>
      <p>${s.kind === "member" ? "员工群发" : "企业群发"} · ${esc(s.text)}</p>
      <p>成员：${Object.entries(s.members).map(([m, v]) => `${esc(m)} ${v === "executed" ? "已执行" : "未执行"}`).join(" · ") || "无"}</p>
      <p><button id="poll">刷新</button> <button id="cancel">取消群发</button> ${admin ? `<button id="remind">提醒成员</button>` : ""}</p>
      <table id="sendrecipients"><tr><th>接收者</th><th>状态</th></tr>${Object.entries(s.recipients).map(([r, v]) => `<tr><td>${esc(r)}</td><td>${esc(RECIPIENT_STATES[v] || v)}</td></tr>`).join("")}</table>
      ${s.refused.length ? `<h4>未发送</h4><table id="sendrefusals"><tr><th>接收者</th><th>规则</th><th>原因</th></tr>${s.refused.map((r) => `<tr><td>${esc(r.recipient)}</td><td>${esc(r.rule)}</td><td>${esc(r.reason)}</td></tr>`).join("")}</table>` : ""}`;
    $("#poll").onclick = async () => { try { await api(`/api/v1/mass-sends/${sid}/poll`, { method: "POST" }); await messagingView(); } catch (err) { showError(err.message); } };
    $("#cancel").onclick = async () => { try { await api(`/api/v1/mass-sends/${sid}/cancel`, { method: "POST" }); await messagingView(); } catch (err) { showError(err.message); } };
    if (admin) $("#remind").onclick = async () => { try { const r = await api(`/api/v1/mass-sends/${sid}/remind`, { method: "POST" }); showError(""); $("#poll").insertAdjacentHTML("afterend", ` <span class="muted">今日已提醒 ${r.reminders_today} 次</span>`); } catch (err) { showError(err.message); } };
    return;
  }
  const sends = await api("/api/v1/mass-sends");
  const mtabs = [["sends", "群发"], ["moments", "朋友圈"], ["invites", "标签拉群"], ["channels", "渠道活码"], ["materials", "素材库"]];
  main.innerHTML = `<div class="tabs" id="mtabs">${mtabs.map(([k, v]) => `<button data-t="${k}" class="${k === "sends" ? "on" : ""}">${v}</button>`).join("")}</div>
    <h3>新建群发</h3><form id="sendform" class="search">
      <select name="kind"><option value="member">员工群发（每位客户每天 1 条）</option>${admin ? `<option value="enterprise">企业群发（每位客户每月 4 条）</option>` : ""}</select>
      <input name="sender" placeholder="发送员工" value="${esc(me.employee || "")}">
      <textarea name="customers" rows="3" placeholder="客户 external_userid，每行一个"></textarea>
      <textarea name="text" rows="3" maxlength="4000" placeholder="群发内容（最多 4000 字）"></textarea>
      <button type="button" id="previewbtn">预览</button><button>发送</button></form>
    <div id="sendpreview"></div>
    <h3>群发任务</h3><table id="sendlist"><tr><th>任务</th><th>类型</th><th>内容</th><th>接收</th><th>状态</th></tr>
    ${sends.map((s) => `<tr><td><a href="#/messaging?send=${esc(s.id)}">${esc(s.id)}</a></td><td>${s.kind === "member" ? "员工" : "企业"}</td><td>${esc(s.text.slice(0, 30))}</td><td>${s.accepted}</td><td>${esc(SEND_STATES[s.state] || s.state)}</td></tr>`).join("") || "<tr><td colspan=5 class='muted'>无</td></tr>"}</table>`;
  $("#mtabs").onclick = (e) => { if (e.target.dataset.t) location.hash = `#/messaging?tab=${e.target.dataset.t}`; };
  const doc = () => {
    const f = Object.fromEntries(new FormData($("#sendform")));
    return { kind: f.kind, sender: f.sender || undefined, customers: f.customers.split(/\s+/).filter(Boolean), text: f.text };
  };
  const showRefusals = (out) => `<p id="reach">将送达 ${out.reach ?? out.accepted_count} 位</p>${out.refused.length ? `<table id="previewrefusals"><tr><th>接收者</th><th>规则</th><th>原因</th></tr>${out.refused.map((r) => `<tr><td>${esc(r.recipient)}</td><td>${esc(r.rule)}</td><td>${esc(r.reason)}</td></tr>`).join("")}</table>` : ""}`;
  $("#previewbtn").onclick = async () => { try { showError(""); $("#sendpreview").innerHTML = showRefusals(await api("/api/v1/mass-sends/preview", { method: "POST", json: doc() })); } catch (err) { showError(err.message); } };
  $("#sendform").onsubmit = async (e) => {
    e.preventDefault();
    try { const s = await api("/api/v1/mass-sends", { method: "POST", json: doc() }); location.hash = `#/messaging?send=${s.id}`; } catch (err) { showError(err.message); }
  };
}

const views = { "#/alerts": alertsView, "#/users": usersView, "#/account": accountView, "#/settings": settingsView, "#/trail": trailView, "#/messaging": messagingView, "#/customers": customersView, "#/dialer": dialerView, "#/archive": archiveView, "#/search": searchView, "#/catalog": catalogView, "#/audits": auditsView, "#/words": wordsView, "#/consent": consentView };
async function route() {
  if (!sessionStorage.getItem("token")) return loginView();
  try {
    me = me || await api("/api/v1/me");
  } catch { return loginView(); }
  $("#nav").hidden = false;
  document.querySelectorAll("#nav a").forEach((a) => { a.hidden = !me.permissions.includes(a.dataset.perm); a.classList.toggle("active", a.getAttribute("href") === location.hash.split("?")[0]); });
  $("#who").innerHTML = `<a href="#/account" id="account">${esc(me.username)}</a> <button id="logout">退出</button>`;
  $("#logout").onclick = async () => { await api("/api/v1/auth/logout", { method: "POST" }).catch(() => {}); sessionStorage.removeItem("token"); me = null; if (popupStream) popupStream.abort(); location.hash = ""; loginView(); };
  listenPopups();
  const view = views[location.hash.split("?")[0]] || archiveView;
  try { showError(""); await view(); } catch (err) { showError(err.message); }
}
window.addEventListener("hashchange", route);
route();
