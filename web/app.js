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
  const hl = (t) => {
    const s = esc(t);
    return q ? s.split(esc(q)).join(`<mark>${esc(q)}</mark>`) : s;
  };
  switch (m.msgtype) {
    case "text": return hl(p.content);
    case "revoke": return `<span>撤回了一条消息</span>`;
    case "image": return `[图片] ${Math.round((p.filesize || 0) / 1024)} KB`;
    case "voice": return `[语音] ${p.play_length || 0} 秒`;
    case "video": return `[视频] ${p.play_length || 0} 秒`;
    case "file": return `<span class="card">📄 ${hl(p.filename)} · ${Math.round((p.filesize || 0) / 1024)} KB</span>`;
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

async function catalogView() {
  let tab = "active";
  const deps = await api("/api/v1/departments");
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
    main.innerHTML = `<div class="tabs">${[["active", "在职员工"], ["resigned", "离职员工"], ["customers", "客户档案"]].map(([k, v]) => `<button data-t="${k}" class="${k === tab ? "on" : ""}">${v}</button>`).join("")}</div>
      <form id="cform" class="search">${filters}<button type="submit">筛选</button></form>${body}`;
    main.querySelector(".tabs").onclick = (e) => { if (e.target.dataset.t) { tab = e.target.dataset.t; $("#cform").reset(); $("#cform").innerHTML = ""; paint().catch((err) => showError(err.message)); } };
    $("#cform").onsubmit = (e) => { e.preventDefault(); paint().catch((err) => showError(err.message)); };
  };
  await paint();
}

async function auditsView() {
  let status = "pending";
  const paint = async () => {
    const rows = await api(`/api/v1/audits?status=${status}`);
    const canHandle = me.permissions.includes("audit.handle");
    main.innerHTML = `<div class="tabs"><button data-s="pending" class="${status === "pending" ? "on" : ""}">待处理</button>
      <button data-s="handled" class="${status === "handled" ? "on" : ""}">已处理</button></div>
      <table><tr><th>类型</th><th>员工</th><th>内容</th><th>时间</th><th>${status === "pending" ? "处理" : "结论"}</th></tr>
      ${rows.map((a) => `<tr data-id="${esc(a.id)}"><td>${a.kind === "content" ? "敏感词：" + esc(a.words.join("、")) : { push_card: "推送名片", red_packet: "发红包", delete_customer: "删除好友" }[a.behaviour] || esc(a.behaviour)}</td>
        <td>${esc(a.employee)}</td><td>${esc(a.text).slice(0, 200)}</td><td>${time(a.msgtime)}</td>
        <td>${status === "pending" ? (canHandle ? `<select><option value="abnormal">异常</option><option value="normal">正常</option><option value="ignore">忽略</option></select>
          <input placeholder="备注"><button class="handle">提交</button>` : "<span class='muted'>无权限</span>") : `${{ abnormal: "异常", normal: "正常", ignore: "忽略" }[a.verdict]} · ${esc(a.handled_by)} ${esc(a.remark || "")}`}</td></tr>`).join("")}</table>`;
    main.querySelector(".tabs").onclick = (e) => { if (e.target.dataset.s) { status = e.target.dataset.s; paint().catch((err) => showError(err.message)); } };
    main.querySelectorAll("button.handle").forEach((b) => b.onclick = async () => {
      const tr = b.closest("tr");
      try {
        await api(`/api/v1/audits/${encodeURIComponent(tr.dataset.id)}/handle`, { method: "POST", json: { verdict: tr.querySelector("select").value, remark: tr.querySelector("input").value } });
        tr.remove();
      } catch (err) { showError(err.message); }
    });
  };
  await paint();
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

const views = { "#/archive": archiveView, "#/search": searchView, "#/catalog": catalogView, "#/audits": auditsView, "#/words": wordsView, "#/consent": consentView };
async function route() {
  if (!sessionStorage.getItem("token")) return loginView();
  try {
    me = me || await api("/api/v1/me");
  } catch { return loginView(); }
  $("#nav").hidden = false;
  document.querySelectorAll("#nav a").forEach((a) => { a.hidden = !me.permissions.includes(a.dataset.perm); a.classList.toggle("active", a.getAttribute("href") === location.hash.split("?")[0]); });
  $("#who").innerHTML = `${esc(me.username)} <button id="logout">退出</button>`;
  $("#logout").onclick = async () => { await api("/api/v1/auth/logout", { method: "POST" }).catch(() => {}); sessionStorage.removeItem("token"); me = null; location.hash = ""; loginView(); };
  const view = views[location.hash.split("?")[0]] || archiveView;
  try { showError(""); await view(); } catch (err) { showError(err.message); }
}
window.addEventListener("hashchange", route);
route();
