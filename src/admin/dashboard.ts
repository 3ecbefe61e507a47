/**
 * The live dashboard: one self-contained HTML page (markup, CSS and script inline, nothing from
 * a CDN), served by the admin listener. The script is written below as a TypeScript function so
 * it is compiled and linted with the rest; `dashboardHtml` embeds its source text. It reads the
 * admin API with `fetch` (so it can send the bearer token), follows `/api/events` as a
 * Server-Sent Events stream, and renders with DOM calls only (textContent, never innerHTML), so
 * nothing a client sent (paths in recent errors) can inject markup.
 */

// The browser globals the script uses. Declared here, in this module only, because the project
// compiles against Node's types; the function below runs in the browser, never in Node.
declare const document: any;
declare const sessionStorage: any;
declare const TextDecoder: any;
declare const CSS: any;

/** Runs in the browser. Must not reference anything outside its own body. */
function dashboardApp(): void {
  const TOKEN_KEY = 'switchyard-admin-token';
  const SVG = 'http://www.w3.org/2000/svg';
  let token: string = sessionStorage.getItem(TOKEN_KEY) ?? '';
  let retryTimer: any = null;

  const byId = (id: string): any => document.getElementById(id);

  function el(tag: string, className?: string, text?: string): any {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function authHeaders(): Record<string, string> {
    return token ? { authorization: `Bearer ${token}` } : {};
  }

  function fmt(n: number, digits = 1): string {
    if (!Number.isFinite(n)) return '–';
    if (Math.abs(n) >= 1000) return `${(n / 1000).toFixed(1)}k`;
    return n.toFixed(digits).replace(/\.0+$/, '');
  }

  function ms(n: number): string {
    if (n >= 1000) return `${fmt(n / 1000, 2)} s`;
    return `${fmt(n, n < 10 ? 1 : 0)} ms`;
  }

  function pct(n: number | null): string {
    return n === null ? '–' : `${fmt(n * 100, n < 0.1 ? 2 : 1)}%`;
  }

  function setConnection(state: string): void {
    const pill = byId('conn');
    pill.textContent = state;
    pill.className = `pill conn-${state}`;
  }

  function sparkline(id: string, values: number[]): void {
    const svg = byId(id);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    if (values.length < 2) return;
    const max = Math.max(...values, 1e-9);
    const w = 120;
    const h = 32;
    const step = w / (values.length - 1);
    const points = values
      .map((v, i) => `${(i * step).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`)
      .join(' ');
    const area = document.createElementNS(SVG, 'polygon');
    area.setAttribute('points', `0,${h} ${points} ${w},${h}`);
    area.setAttribute('class', 'spark-area');
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', points);
    line.setAttribute('class', 'spark-line');
    svg.appendChild(area);
    svg.appendChild(line);
  }

  /** Reuses rows by key so buttons survive the once-a-second refresh. */
  function syncRows(
    tbody: any,
    rows: Array<{ key: string; cells: Array<string | any> }>,
    labels: string[] = [],
  ): void {
    const existing = new Map<string, any>();
    for (const tr of Array.from(tbody.children) as any[]) existing.set(tr.dataset.key, tr);
    const wanted = new Set(rows.map((r) => r.key));
    for (const [key, tr] of existing) if (!wanted.has(key)) tr.remove();
    rows.forEach((row, index) => {
      let tr = existing.get(row.key);
      if (!tr) {
        tr = document.createElement('tr');
        tr.dataset.key = row.key;
        for (let i = 0; i < row.cells.length; i++) {
          const td = document.createElement('td');
          // Narrow screens show rows as blocks; the label then precedes the value.
          if (labels[i]) td.dataset.label = labels[i];
          tr.appendChild(td);
        }
      }
      row.cells.forEach((cell, i) => {
        const td = tr.children[i];
        if (typeof cell === 'string') {
          if (td.textContent !== cell) td.textContent = cell;
        } else if (td.firstChild !== cell) {
          td.replaceChildren(cell);
        }
      });
      if (tbody.children[index] !== tr) tbody.insertBefore(tr, tbody.children[index] ?? null);
    });
  }

  const buttons = new Map<string, any>();
  const badges = new Map<string, any>();

  function stateBadge(key: string, state: string): any {
    let badge = badges.get(key);
    if (!badge) {
      badge = el('span');
      badges.set(key, badge);
    }
    badge.textContent = state;
    badge.className = `badge state-${state}`;
    badge.dataset.state = state;
    return badge;
  }

  function actionButton(key: string, upstream: string, url: string, state: string): any {
    let button = buttons.get(key);
    if (!button) {
      button = el('button', 'action');
      button.type = 'button';
      button.addEventListener('click', () => {
        void toggle(button);
      });
      buttons.set(key, button);
    }
    const action = state === 'draining' ? 'enable' : 'drain';
    button.dataset.upstream = upstream;
    button.dataset.url = url;
    button.dataset.action = action;
    button.textContent = action === 'drain' ? 'Drain' : 'Enable';
    button.setAttribute('aria-label', `${action} ${url}`);
    return button;
  }

  async function toggle(button: any): Promise<void> {
    const { upstream, url, action } = button.dataset;
    button.disabled = true;
    try {
      const res = await fetch(`/api/upstreams/${encodeURIComponent(upstream)}/${action}`, {
        method: 'POST',
        headers: { ...authHeaders(), 'content-type': 'application/json' },
        body: JSON.stringify({ url }),
      });
      if (res.status === 401) showLogin('The token was refused.');
      else if (!res.ok) showNotice(`Could not ${action} ${url}: ${res.status}`);
      else {
        const answer: any = await res.json();
        const key = `${upstream} ${url}`;
        stateBadge(key, answer.server.state);
        actionButton(key, upstream, url, answer.server.state);
      }
    } catch (err) {
      showNotice(`Could not ${action} ${url}: ${String(err)}`);
    } finally {
      button.disabled = false;
    }
  }

  function showNotice(text: string): void {
    const notice = byId('notice');
    notice.textContent = text;
    notice.hidden = text === '';
  }

  function renderUpstreams(upstreams: any[]): void {
    const root = byId('upstreams');
    const seen = new Set<string>();
    for (const up of upstreams) {
      seen.add(up.name);
      let card = root.querySelector(`[data-upstream="${CSS.escape(up.name)}"]`);
      if (!card) {
        card = el('div', 'upstream card');
        card.dataset.upstream = up.name;
        const title = el('h3');
        title.appendChild(el('span', 'name', up.name));
        title.appendChild(el('span', 'muted balancer', up.balancer));
        card.appendChild(title);
        const scroll = el('div', 'scroll');
        const table = el('table');
        const head = el('thead');
        const tr = el('tr');
        for (const h of ['Server', 'State', 'Active', 'Requests', 'Weight', ''])
          tr.appendChild(el('th', '', h));
        head.appendChild(tr);
        table.appendChild(head);
        table.appendChild(el('tbody'));
        scroll.appendChild(table);
        card.appendChild(scroll);
        root.appendChild(card);
      }
      const up_ = up;
      syncRows(
        card.querySelector('tbody'),
        up.servers.map((s: any) => {
          const key = `${up_.name} ${s.url}`;
          // The API's state is up, down or draining; a down server that passive health took
          // out for a while is shown as ejected.
          const state = s.state === 'down' && s.ejected ? 'ejected' : s.state;
          return {
            key,
            cells: [
              s.url,
              stateBadge(key, state),
              String(s.activeRequests),
              String(s.totalRequests ?? ''),
              String(s.weight),
              actionButton(key, up_.name, s.url, s.state),
            ],
          };
        }),
        ['', '', 'active', 'requests', 'weight', ''],
      );
    }
    for (const card of Array.from(root.children) as any[])
      if (!seen.has(card.dataset.upstream)) card.remove();
  }

  function render(data: any): void {
    const status = data.status ?? {};
    byId('version').textContent = `v${status.version ?? '?'} · up ${fmt(
      (status.uptimeSeconds ?? 0) / 60,
      0,
    )} min · ${status.workers ?? 1} worker(s)`;
    const history: any[] = data.history ?? [];
    // The cards show the last five seconds, so one idle second does not read as "0".
    const recent = history.slice(-5);
    const requests = recent.reduce((n, p) => n + p.rps, 0);
    const failed = recent.reduce((n, p) => n + p.rps * p.errorRate, 0);
    const busy = recent.filter((p) => p.rps > 0);
    const latest = busy[busy.length - 1] ?? { p50: 0, p99: 0 };
    byId('active').textContent = String(data.activeRequests ?? 0);
    byId('rps').textContent = fmt(recent.length === 0 ? 0 : requests / recent.length);
    byId('errors').textContent = pct(requests === 0 ? 0 : failed / requests);
    byId('p50').textContent = ms(latest.p50);
    byId('p99').textContent = ms(latest.p99);
    const totals = data.totals ?? {};
    byId('cache').textContent = pct(totals.cacheHitRatio ?? null);
    byId('ratelimited').textContent = String(totals.rateLimited ?? 0);
    byId('total').textContent = String(totals.requests ?? 0);
    sparkline(
      'spark-rps',
      history.map((p) => p.rps),
    );
    sparkline(
      'spark-errors',
      history.map((p) => p.errorRate),
    );
    sparkline(
      'spark-p50',
      history.map((p) => p.p50),
    );
    sparkline(
      'spark-p99',
      history.map((p) => p.p99),
    );
    renderUpstreams(data.upstreams ?? []);
    syncRows(
      byId('routes-body'),
      (data.routes ?? []).map((r: any) => ({
        key: r.name,
        cells: [
          r.name,
          String(r.requests),
          fmt(r.rps),
          pct(r.errorRate),
          ms(r.p50),
          ms(r.p99),
          String(r.rateLimited),
        ],
      })),
    );
    const errors: any[] = data.recentErrors ?? [];
    byId('no-errors').hidden = errors.length > 0;
    byId('recent-errors').hidden = errors.length === 0;
    syncRows(
      byId('errors-body'),
      errors.map((e) => ({
        key: `${e.time} ${e.requestId}`,
        cells: [
          e.time.slice(11, 19),
          String(e.status),
          e.route || '–',
          `${e.method} ${e.path}`,
          e.requestId,
        ],
      })),
    );
  }

  function showLogin(message: string): void {
    setConnection('locked');
    byId('login').hidden = false;
    byId('login-message').textContent = message;
    byId('token').focus();
  }

  async function follow(): Promise<void> {
    retryTimer = null;
    setConnection('connecting');
    try {
      const res = await fetch('/api/events', { headers: authHeaders() });
      if (res.status === 401) {
        showLogin(token ? 'The token was refused.' : 'This admin listener needs its token.');
        return;
      }
      if (!res.ok || !res.body) throw new Error(`status ${res.status}`);
      byId('login').hidden = true;
      setConnection('live');
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = frame
            .split('\n')
            .filter((line) => line.startsWith('data:'))
            .map((line) => line.slice(5).trimStart())
            .join('\n');
          if (data !== '') render(JSON.parse(data));
        }
      }
    } catch {
      // Network error or the admin listener restarting: retry below.
    }
    setConnection('offline');
    retryTimer ??= setTimeout(() => void follow(), 2000);
  }

  byId('login').addEventListener('submit', (event: any) => {
    event.preventDefault();
    token = byId('token').value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    if (retryTimer !== null) clearTimeout(retryTimer);
    void follow();
  });
  void follow();
}

const STYLE = `
:root{color-scheme:light dark;--bg:#f5f6f8;--fg:#1d2330;--muted:#667085;--card:#fff;--line:#e3e6ec;
--accent:#2f6fde;--ok:#1f9d55;--bad:#d64545;--warn:#d98b19;--eject:#8a4fd6}
@media (prefers-color-scheme:dark){:root{--bg:#11151c;--fg:#e6e9ef;--muted:#98a2b3;--card:#1a202a;
--line:#2a3240;--accent:#6ea0ff}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;padding:.8rem 1rem;background:var(--card);
border-bottom:1px solid var(--line);position:sticky;top:0;z-index:1}
header h1{font-size:1.15rem;margin:0}
.muted{color:var(--muted);font-size:.85rem}
main{padding:1rem;max-width:1200px;margin:0 auto}
h2{font-size:1rem;margin:1.4rem 0 .6rem}
h3{font-size:.95rem;margin:0 0 .5rem;display:flex;gap:.6rem;align-items:baseline}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(130px,1fr));gap:.7rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:.75rem .9rem}
.stat .label{color:var(--muted);font-size:.8rem;text-transform:uppercase;letter-spacing:.03em}
.stat .value{font-size:1.5rem;font-weight:600;font-variant-numeric:tabular-nums}
.spark{display:block;width:100%;height:32px;margin-top:.2rem}
.spark-line{fill:none;stroke:var(--accent);stroke-width:1.5;vector-effect:non-scaling-stroke}
.spark-area{fill:var(--accent);opacity:.12}
#upstreams{display:grid;grid-template-columns:minmax(0,1fr);gap:.7rem}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid var(--line);white-space:nowrap}
th{color:var(--muted);font-weight:500;font-size:.8rem}
tr:last-child td{border-bottom:0}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:999px;font-size:.8rem;font-weight:600;color:#fff}
.state-up{background:var(--ok)}.state-down{background:var(--bad)}.state-draining{background:var(--warn)}
.state-ejected{background:var(--eject)}
.pill{padding:.1rem .6rem;border-radius:999px;font-size:.8rem;border:1px solid var(--line)}
.conn-live{color:var(--ok);border-color:var(--ok)}.conn-offline,.conn-locked{color:var(--bad);border-color:var(--bad)}
button{font:inherit;padding:.3rem .8rem;border-radius:6px;border:1px solid var(--line);background:var(--bg);color:var(--fg);cursor:pointer;min-height:32px}
button:hover{border-color:var(--accent)}
button[data-action=enable]{border-color:var(--ok)}
#login{max-width:420px;margin:2rem auto}
#login input{width:100%;font:inherit;padding:.5rem;margin:.5rem 0;border:1px solid var(--line);border-radius:6px;background:var(--bg);color:var(--fg)}
#notice{background:var(--bad);color:#fff;padding:.5rem 1rem;border-radius:8px;margin-bottom:.8rem}
.err td:nth-child(4){white-space:normal;word-break:break-all}
@media (max-width:520px){main{padding:.6rem}.stat .value{font-size:1.25rem}th,td{padding:.35rem .4rem}}
@media (max-width:640px){.upstream thead{display:none}.upstream table,.upstream tbody{display:block}
.upstream tr{display:flex;flex-wrap:wrap;align-items:center;gap:.35rem .9rem;padding:.55rem 0;border-bottom:1px solid var(--line)}
.upstream tr:last-child{border-bottom:0}.upstream td{border:0;padding:0}
.upstream td:first-child{flex-basis:100%;font-weight:600;white-space:normal;overflow-wrap:anywhere}
.upstream td[data-label]::before{content:attr(data-label) " ";color:var(--muted);font-size:.8rem}
.upstream td:last-child{margin-left:auto}}
`;

function statCard(id: string, label: string, spark?: string): string {
  const svg = spark
    ? `<svg class="spark" id="${spark}" viewBox="0 0 120 32" preserveAspectRatio="none" aria-hidden="true"></svg>`
    : '';
  return `<div class="card stat"><div class="label">${label}</div><div class="value" id="${id}">–</div>${svg}</div>`;
}

/** The whole page. `locked` pre-opens the token form (the page was served with a 401). */
export function dashboardHtml(locked: boolean): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Switchyard dashboard</title>
<style>${STYLE}</style></head>
<body>
<header><h1>Switchyard</h1><span class="muted" id="version"></span>
<span class="pill" id="conn">connecting</span></header>
<main>
<form id="login" class="card" ${locked ? '' : 'hidden'}>
<h2>Admin token</h2><p class="muted" id="login-message">This admin listener needs its token.</p>
<label for="token">Bearer token</label>
<input id="token" type="password" autocomplete="current-password" required>
<button type="submit">Open dashboard</button></form>
<div id="notice" hidden></div>
<section class="cards">
${statCard('active', 'Active requests')}
${statCard('rps', 'Requests / s', 'spark-rps')}
${statCard('errors', 'Error rate', 'spark-errors')}
${statCard('p50', 'Latency p50', 'spark-p50')}
${statCard('p99', 'Latency p99', 'spark-p99')}
${statCard('cache', 'Cache hit ratio')}
${statCard('ratelimited', 'Rate limited')}
${statCard('total', 'Requests')}
</section>
<h2>Upstreams</h2><div id="upstreams"></div>
<h2>Routes</h2>
<div class="card scroll"><table id="routes"><thead><tr><th>Route</th><th>Requests</th><th>Req/s</th>
<th>Errors</th><th>p50</th><th>p99</th><th>Limited</th></tr></thead><tbody id="routes-body"></tbody></table></div>
<h2>Recent errors</h2>
<div class="card scroll"><p class="muted" id="no-errors">None so far.</p>
<table id="recent-errors" class="err" hidden><thead><tr><th>Time</th><th>Status</th><th>Route</th><th>Request</th>
<th>Request id</th></tr></thead><tbody id="errors-body"></tbody></table></div>
</main>
<script>(${dashboardApp.toString()})();</script>
</body></html>`;
}
