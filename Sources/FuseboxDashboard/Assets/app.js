// Fusebox dashboard: renders every page of the shell from the JSON API
// (docs/DASHBOARD.md). Plain ES2020, no framework, no network access beyond
// this origin. Text from the API is only ever set through textContent or
// attribute values, never parsed as HTML.
'use strict';
(() => {
  const STATES = ['CLOSED', 'OPEN', 'HALF_OPEN', 'FORCED_OPEN', 'FORCED_CLOSED', 'DISABLED', 'SHADOW'];
  const ACTIONS = [
    ['force_open', 'Force open', 'Open'],
    ['force_close', 'Force close', 'Close'],
    ['reset', 'Reset', 'Reset'],
    ['disable', 'Disable', 'Disable'],
    ['shadow', 'Shadow', 'Shadow'],
  ];
  const AUDIT_ACTIONS = ['FORCE_OPEN', 'FORCE_CLOSE', 'DISABLE', 'SHADOW', 'RESET', 'OVERRIDE_EXPIRED', 'PUT_POLICY',
    'DELETE_POLICY', 'CONNECTION_REFUSED', 'LIST_AUDIT', 'GET_CLUSTER_STATUS'];
  const SVGNS = 'http://www.w3.org/2000/svg';

  // Hooks for tests and for people at the console.
  const stats = window.fuseboxStats = {
    transitions: 0, snapshots: 0, rates: 0, received: 0, lastAppliedAt: 0, lastTransitionAt: 0, rows: 0, readyAt: 0,
  };

  // ---- small helpers ---------------------------------------------------

  const $ = (sel, root) => (root || document).querySelector(sel);
  const enc = encodeURIComponent;

  function meta(name) {
    const m = document.querySelector('meta[name="' + name + '"]');
    return m ? m.getAttribute('content') || '' : '';
  }

  const session = { csrf: meta('csrf-token'), name: meta('fusebox-user'), role: meta('fusebox-role') };
  const isAdmin = () => session.role === 'admin';

  // h('tag', {class, text, title, href, on*: fn, ...}, children…): children
  // that are not nodes become text nodes.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const k in attrs) {
        const v = attrs[k];
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k === 'text') el.textContent = v;
        else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function setText(el, text) {
    const t = text === null || text === undefined ? '' : String(text);
    if (el.textContent !== t) el.textContent = t;
  }

  function setAttr(el, name, value) {
    if (value === null || value === undefined || value === '') {
      if (el.hasAttribute(name)) el.removeAttribute(name);
    } else if (el.getAttribute(name) !== String(value)) {
      el.setAttribute(name, String(value));
    }
  }

  function ready() {
    if (document.body.dataset.ready !== '1') {
      stats.readyAt = performance.now();
      document.body.dataset.ready = '1';
    }
  }

  const pad = (n) => String(n).padStart(2, '0');

  // "4m 05s", "3h 12m", "2d 4h".
  function duration(ms) {
    let s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + 's';
    const m = Math.floor(s / 60);
    s %= 60;
    if (m < 60) return m + 'm ' + pad(s) + 's';
    const hrs = Math.floor(m / 60);
    if (hrs < 48) return hrs + 'h ' + pad(m % 60) + 'm';
    return Math.floor(hrs / 24) + 'd ' + (hrs % 24) + 'h';
  }

  // "58s", "43m", "2h 05m", "3d".
  function short(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm';
    if (s < 48 * 3600) return Math.floor(s / 3600) + 'h ' + pad(Math.floor(s / 60) % 60) + 'm';
    return Math.floor(s / 86400) + 'd';
  }

  function ago(ms) {
    if (!ms) return '—';
    const d = Date.now() - ms;
    return d >= 0 ? duration(d) + ' ago' : 'in ' + duration(-d);
  }

  function stamp(ms) {
    if (!ms) return '';
    const d = new Date(ms);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  const pct = (v) => (typeof v === 'number' ? (v >= 10 || v === 0 ? v.toFixed(0) : v.toFixed(1)) + '%' : '—');
  const num = (v) => (typeof v === 'number' ? v.toLocaleString('en-US') : '—');

  function stateBadge(state, tag) {
    return h(tag || 'span', { class: 'state state-' + state, text: label(state) });
  }

  const label = (state) => String(state || '');

  function statusBadge(status) {
    return h('span', { class: 'status status-' + String(status || 'unknown').toLowerCase(), text: status || 'unknown' });
  }

  function breakerHref(registry, name) {
    return '/breaker?registry=' + enc(registry) + '&name=' + enc(name);
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const k in params) if (params[k] !== '' && params[k] !== null && params[k] !== undefined && params[k] !== false) q.set(k, params[k]);
    const s = q.toString();
    return s ? '?' + s : '';
  }

  function setURL(params) {
    history.replaceState(null, '', location.pathname + query(params));
  }

  // ---- the API ---------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  let leaving = false;
  function toLogin() {
    if (!leaving) {
      leaving = true;
      location.assign('/login');
    }
  }

  async function api(path, init) {
    const options = Object.assign({ credentials: 'same-origin', headers: { Accept: 'application/json' } }, init || {});
    let r;
    try {
      r = await fetch(path, options);
    } catch (e) {
      throw new ApiError(0, 'network', 'fuseboxd cannot be reached (' + e.message + ')');
    }
    if (r.status === 401) {
      toLogin();
      throw new ApiError(401, 'unauthenticated', 'signed out');
    }
    let body = null;
    try {
      body = await r.json();
    } catch (e) { /* not JSON */ }
    if (!r.ok) {
      const err = (body && body.error) || {};
      throw new ApiError(r.status, err.code || String(r.status), err.message || r.statusText || 'the request failed');
    }
    return body || {};
  }

  function post(path, body) {
    return api(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-CSRF-Token': session.csrf },
      body: JSON.stringify(body),
    });
  }

  let flashTimer = 0;
  function flash(message, kind) {
    const f = $('#flash');
    if (!f) return;
    f.textContent = message;
    f.className = 'flash flash-' + (kind || 'error');
    f.hidden = false;
    clearTimeout(flashTimer);
    if (kind === 'ok') flashTimer = setTimeout(() => { f.hidden = true; }, 6000);
  }

  function errorText(e) {
    if (e instanceof ApiError) return e.message + (e.code && e.status ? ' (' + e.status + ' ' + e.code + ')' : '');
    return String(e && e.message ? e.message : e);
  }

  function failed(main, e) {
    if (e && e.status === 401) return;
    clear(main).append(h('div', { class: 'panel empty' }, h('p', { class: 'error-text', text: errorText(e) })));
    ready();
  }

  // One EventSource per page; reconnects with a growing pause, and goes to
  // the login page once the session is gone.
  function eventStream(registry, handlers) {
    let es = null;
    let pause = 1000;
    let stopped = false;
    const live = $('#live');
    const setLive = (on, text) => {
      if (!live) return;
      live.hidden = false;
      live.className = 'live ' + (on ? 'live-on' : 'live-off');
      live.textContent = text;
    };
    function open() {
      if (stopped) return;
      es = new EventSource('/api/v1/events' + (registry ? '?registry=' + enc(registry) : ''));
      es.onopen = () => { pause = 1000; setLive(true, 'live'); };
      for (const name of ['snapshot', 'transition', 'rates']) {
        es.addEventListener(name, (ev) => {
          stats.received++;
          let data;
          try {
            data = JSON.parse(ev.data);
          } catch (e) {
            return;
          }
          if (handlers[name]) handlers[name](data);
        });
      }
      es.onerror = () => {
        setLive(false, 'reconnecting…');
        if (es.readyState !== EventSource.CLOSED) return; // the browser retries by itself
        es = null;
        setTimeout(async () => {
          try {
            await api('/api/v1/session');
          } catch (e) {
            if (e.status === 401) return;
          }
          open();
        }, pause);
        pause = Math.min(pause * 2, 30000);
      };
    }
    open();
    return {
      close() {
        stopped = true;
        if (es) es.close();
      },
    };
  }

  // ---- sparklines -------------------------------------------------------

  function sparkline(values, w, hgt) {
    const svg = document.createElementNS(SVGNS, 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('width', w);
    svg.setAttribute('height', hgt);
    svg.setAttribute('viewBox', '0 0 ' + w + ' ' + hgt);
    svg.setAttribute('aria-hidden', 'true');
    const base = document.createElementNS(SVGNS, 'line');
    base.setAttribute('class', 'spark-base');
    base.setAttribute('x1', 0);
    base.setAttribute('x2', w);
    base.setAttribute('y1', hgt - 0.5);
    base.setAttribute('y2', hgt - 0.5);
    const area = document.createElementNS(SVGNS, 'path');
    area.setAttribute('class', 'spark-area');
    const line = document.createElementNS(SVGNS, 'polyline');
    line.setAttribute('class', 'spark-line');
    svg.append(base, area, line);
    drawSpark(svg, values);
    return svg;
  }

  // 60 samples across the width (5 minutes at one every 5 s), newest right.
  function drawSpark(svg, values) {
    const w = +svg.getAttribute('width');
    const hgt = +svg.getAttribute('height');
    const v = (values || []).slice(-60);
    const area = svg.childNodes[1];
    const line = svg.childNodes[2];
    if (!v.length) {
      line.setAttribute('points', '');
      area.setAttribute('d', '');
      svg.setAttribute('class', 'spark');
      return;
    }
    const step = w / 59;
    const x0 = w - (v.length - 1) * step;
    const pts = v.map((y, i) => {
      const c = Math.max(0, Math.min(100, +y || 0));
      return (x0 + i * step).toFixed(1) + ',' + (hgt - 1.5 - (c / 100) * (hgt - 3)).toFixed(1);
    });
    if (pts.length === 1) pts.unshift((w - 3).toFixed(1) + ',' + pts[0].split(',')[1]);
    line.setAttribute('points', pts.join(' '));
    area.setAttribute('d', 'M' + pts[0].split(',')[0] + ',' + hgt + ' L' + pts.join(' L') + ' L' + w + ',' + hgt + ' Z');
    const last = +v[v.length - 1] || 0;
    const peak = Math.max(...v.map((x) => +x || 0));
    svg.setAttribute('class', 'spark ' + (last >= 50 ? 'spark-hot' : peak > 0 ? 'spark-warm' : 'spark-calm'));
  }

  // ---- the action form (admins) -----------------------------------------

  let actionForm = null;

  function closeAction() {
    if (actionForm) {
      actionForm.remove();
      actionForm = null;
    }
  }

  function actionButtons(registry, name, compact) {
    if (!isAdmin()) return null;
    return h('span', { class: 'actions' }, ACTIONS.map(([action, title, short]) =>
      h('button', {
        type: 'button', class: 'act act-' + action, 'data-action': action, title: title + ' ' + registry + '/' + name,
        text: compact ? short : title,
      })));
  }

  function openAction(anchor, registry, name, action, done) {
    if (!isAdmin()) return;
    closeAction();
    const spec = ACTIONS.find((a) => a[0] === action);
    if (!spec) return;
    const override = action !== 'reset';
    const reason = h('input', {
      id: 'action-reason', type: 'text', maxlength: 1024, autocomplete: 'off',
      placeholder: action === 'force_open' ? 'required: why, for the audit log' : 'why, for the audit log',
    });
    const durationInput = h('input', { id: 'action-duration', type: 'number', min: 0, step: 1, placeholder: '0 = until lifted', inputmode: 'numeric' });
    const durationRow = h('label', { class: 'field' }, h('span', { text: 'Duration (seconds)' }), durationInput);
    if (!override) {
      durationRow.hidden = true;
      durationInput.hidden = true;
    }
    const confirm = h('button', { type: 'submit', id: 'action-confirm', class: 'primary act-' + action, text: spec[1] });
    const cancel = h('button', { type: 'button', class: 'ghost', text: 'Cancel', onclick: closeAction });
    const form = h('form', { id: 'action-form', class: 'action-form', autocomplete: 'off' },
      h('div', { class: 'action-title' }, h('strong', { text: spec[1] }), ' ', h('span', { class: 'mono', text: registry + '/' + name })),
      h('label', { class: 'field' }, h('span', { text: 'Reason' }), reason),
      durationRow,
      h('div', { class: 'action-buttons' }, confirm, cancel));
    form.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeAction(); });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const body = { action, reason: reason.value.trim() };
      if (override) {
        const text = durationInput.value.trim();
        const seconds = text === '' ? 0 : Number(text);
        if (!Number.isInteger(seconds) || seconds < 0) {
          flash('The duration must be a whole number of seconds (0: until lifted).');
          return;
        }
        body.durationSeconds = seconds;
      }
      confirm.disabled = true;
      try {
        const res = await post('/api/v1/breaker/action?registry=' + enc(registry) + '&name=' + enc(name), body);
        closeAction();
        const after = res.after || {};
        flash(spec[1] + ' ' + registry + '/' + name + ': now ' + label(after.state) + (res.auditId ? ' (audit #' + res.auditId + ')' : ''), 'ok');
        if (done) done(res);
      } catch (err) {
        if (err.status === 401) return;
        confirm.disabled = false;
        flash(spec[1] + ' ' + registry + '/' + name + ' failed: ' + errorText(err));
      }
    });
    document.body.append(form);
    actionForm = form;
    const r = anchor.getBoundingClientRect();
    const width = form.offsetWidth || 320;
    form.style.left = Math.max(8, Math.min(r.right - width, document.documentElement.clientWidth - width - 8)) + window.scrollX + 'px';
    form.style.top = r.bottom + 6 + window.scrollY + 'px';
    reason.focus();
  }

  document.addEventListener('mousedown', (e) => {
    if (actionForm && !actionForm.contains(e.target) && !e.target.closest('[data-action]')) closeAction();
  });

  // ---- /breakers ----------------------------------------------------------

  const keyOf = (b) => b.registry + '/' + b.name;
  const sortKey = (key) => key.replace('/', '\u0000');

  function pageBreakers(main) {
    const params = new URLSearchParams(location.search);
    const filter = {
      registry: params.get('registry') || '',
      state: STATES.includes(params.get('state')) ? params.get('state') : '',
      q: params.get('q') || '',
    };
    const model = new Map(); // key → Breaker (the stream's scope: one registry or all)
    const rows = new Map(); // key → row (visible rows only)
    let order = []; // sort keys of the visible rows, in order
    const queue = [];
    let scheduled = false;
    let snapshotSeen = false;
    let stream = null;
    let generationOfLoad = 0;
    const admin = isAdmin();

    const registrySelect = h('select', { id: 'filter-registry', 'aria-label': 'Registry' }, h('option', { value: '', text: 'All registries' }));
    const stateSelect = h('select', { id: 'filter-state', 'aria-label': 'State' }, h('option', { value: '', text: 'All states' }),
      STATES.map((s) => h('option', { value: s, text: label(s) })));
    const search = h('input', { id: 'filter-name', type: 'search', placeholder: 'Filter by name', value: filter.q, 'aria-label': 'Name contains' });
    const summary = h('div', { class: 'summary', id: 'summary' });
    const count = h('span', { class: 'muted count' });
    const tbody = h('tbody', { id: 'breaker-rows' });
    const headers = ['Registry', 'Breaker', 'State', 'Gen', 'Since', 'Reason', 'Override', 'Calls', 'Errors', 'Error trend'];
    if (admin) headers.push('Actions');
    const table = h('table', { class: 'grid breakers', id: 'breakers' },
      h('thead', null, h('tr', null, headers.map((t, i) => h('th', { class: 'col-' + i, text: t })))), tbody);
    const empty = h('p', { class: 'empty-row muted', hidden: true, text: 'No breakers match.' });

    clear(main).append(
      h('div', { class: 'toolbar' }, h('h1', { text: 'Breakers' }), registrySelect, stateSelect, search, count),
      summary,
      h('div', { class: 'panel table-wrap' }, table, empty));

    addRegistryOptions([filter.registry]);
    registrySelect.value = filter.registry;
    stateSelect.value = filter.state;

    function addRegistryOptions(names) {
      const have = new Set(Array.from(registrySelect.options, (o) => o.value));
      const add = names.filter((n) => n && !have.has(n));
      if (!add.length) return;
      const all = Array.from(registrySelect.options).slice(1).map((o) => o.value).concat(add).sort();
      const keep = registrySelect.value;
      while (registrySelect.options.length > 1) registrySelect.remove(1);
      for (const n of all) registrySelect.append(h('option', { value: n, text: n }));
      registrySelect.value = keep;
    }

    const visible = (b) => (!filter.registry || b.registry === filter.registry) &&
      (!filter.state || b.state === filter.state) && (!filter.q || b.name.includes(filter.q));

    // -- rows

    function makeRow(key, b) {
      const tr = document.createElement('tr');
      tr.dataset.key = key;
      const td = (cls) => {
        const c = document.createElement('td');
        if (cls) c.className = cls;
        tr.appendChild(c);
        return c;
      };
      const r = { tr, b: null, key };
      td('reg muted').textContent = b.registry;
      const nameCell = td('name');
      r.link = h('a', { href: breakerHref(b.registry, b.name), text: b.name });
      nameCell.append(r.link);
      r.state = td('state');
      r.pill = document.createElement('span');
      r.pill.className = 'pill';
      r.state.appendChild(r.pill);
      r.gen = td('num gen');
      r.since = td('since');
      r.reason = td('reason');
      r.override = td('override');
      r.calls = td('num');
      r.err = td('num err');
      const sparkCell = td('sparkcell');
      r.spark = sparkline(b.spark, 96, 18);
      sparkCell.append(r.spark);
      if (admin) td('act-cell').append(actionButtons(b.registry, b.name, true));
      updateRow(r, b);
      return r;
    }

    function updateRow(r, b) {
      const old = r.b || {};
      if (old.state !== b.state) {
        r.state.className = 'state state-' + b.state;
        r.pill.textContent = b.state;
        r.tr.className = 'st-' + b.state;
      }
      if (old.evaluatedState !== b.evaluatedState || old.state !== b.state) {
        setAttr(r.state, 'title', b.evaluatedState && b.evaluatedState !== b.state ? 'rules say ' + label(b.evaluatedState) : '');
      }
      if (old.generation !== b.generation) r.gen.textContent = b.generation;
      if (old.sinceMs !== b.sinceMs) setAttr(r.since, 'title', 'since ' + stamp(b.sinceMs));
      setText(r.since, b.sinceMs ? duration(Date.now() - b.sinceMs) : '—');
      if (old.reason !== b.reason || old.untilMs !== b.untilMs) {
        setText(r.reason, b.reason || '');
        setAttr(r.reason, 'title', (b.reason || '') + (b.state === 'OPEN' && b.untilMs ? ' — half-opens at ' + stamp(b.untilMs) : ''));
      }
      renderOverride(r, b.override);
      if (old.calls !== b.calls) r.calls.textContent = num(b.calls);
      if (old.errorRate !== b.errorRate || old.failures !== b.failures) {
        r.err.textContent = b.calls ? pct(b.errorRate) : '—';
        r.err.className = 'num err' + (b.errorRate >= 50 ? ' err-hot' : b.errorRate > 0 ? ' err-warm' : '');
        setAttr(r.err, 'title', typeof b.failures === 'number' ? num(b.failures) + ' failed of ' + num(b.calls) : '');
      }
      if (old.spark !== b.spark) drawSpark(r.spark, b.spark);
      if (old.policy !== b.policy) setAttr(r.link, 'title', 'policy ' + b.policy);
      r.b = b;
    }

    // The state column names the override; this one says how long it holds.
    function renderOverride(r, o) {
      const text = o ? (o.untilMs ? short(o.untilMs - Date.now()) + ' left' : 'no expiry') : '';
      const sig = o ? o.kind + text + (o.reason || '') : '';
      if (r.overrideSig === sig) return;
      r.overrideSig = sig;
      clear(r.override);
      if (o) {
        r.override.append(h('span', {
          class: 'ov ov-' + o.kind, text,
          title: label(o.kind) + (o.untilMs ? ' until ' + stamp(o.untilMs) : ' until lifted') + (o.reason ? ': ' + o.reason : ''),
        }));
      }
    }

    function lowerBound(sk) {
      let lo = 0;
      let hi = order.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (order[mid] < sk) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    }

    // One breaker changed: update, add or remove its row in place.
    function syncOne(key) {
      const b = model.get(key);
      const r = rows.get(key);
      const show = b && visible(b);
      if (show && r) {
        updateRow(r, b);
      } else if (show) {
        const sk = sortKey(key);
        const i = lowerBound(sk);
        order.splice(i, 0, sk);
        const row = makeRow(key, b);
        rows.set(key, row);
        const next = i + 1 < order.length ? rows.get(order[i + 1].replace('\u0000', '/')) : null;
        tbody.insertBefore(row.tr, next ? next.tr : null);
      } else if (r) {
        r.tr.remove();
        rows.delete(key);
        const i = lowerBound(sortKey(key));
        if (order[i] === sortKey(key)) order.splice(i, 1);
      }
    }

    // Everything may have changed: reconcile the rows with the model.
    function syncAll() {
      const keys = [];
      for (const [k, b] of model) if (visible(b)) keys.push(sortKey(k));
      keys.sort();
      const want = new Set(keys);
      for (const [k, r] of rows) {
        if (!want.has(sortKey(k))) {
          r.tr.remove();
          rows.delete(k);
        }
      }
      let cursor = tbody.firstChild;
      for (const sk of keys) {
        const k = sk.replace('\u0000', '/');
        let r = rows.get(k);
        if (r) updateRow(r, model.get(k));
        else {
          r = makeRow(k, model.get(k));
          rows.set(k, r);
        }
        if (r.tr === cursor) cursor = cursor.nextSibling;
        else tbody.insertBefore(r.tr, cursor);
      }
      order = keys;
    }

    function renderSummary() {
      const counts = {};
      for (const b of model.values()) {
        if (filter.registry && b.registry !== filter.registry) continue;
        counts[b.state] = (counts[b.state] || 0) + 1;
      }
      const total = Object.values(counts).reduce((a, c) => a + c, 0);
      const text = STATES.map((s) => s + counts[s]).join() + '|' + filter.state;
      if (summary.dataset.sig !== text) {
        summary.dataset.sig = text;
        clear(summary);
        for (const s of STATES) {
          const n = counts[s] || 0;
          if (!n && s !== 'CLOSED' && s !== 'OPEN' && s !== 'HALF_OPEN') continue;
          summary.append(h('button', {
            type: 'button', class: 'chip chip-' + s + (filter.state === s ? ' chip-on' : '') + (n ? '' : ' chip-zero'),
            'data-state': s, title: 'Show only ' + label(s),
          }, h('span', { class: 'chip-n', text: num(n) }), ' ', label(s)));
        }
      }
      setText(count, rows.size === total ? num(total) + ' breakers' : num(rows.size) + ' of ' + num(total) + ' breakers');
      empty.hidden = rows.size > 0 || !document.body.dataset.ready;
    }

    summary.addEventListener('click', (e) => {
      const chip = e.target.closest('[data-state]');
      if (!chip) return;
      stateSelect.value = filter.state === chip.dataset.state ? '' : chip.dataset.state;
      stateSelect.dispatchEvent(new Event('change'));
    });

    // -- live events, applied once per frame

    const merge = (old, b) => {
      if (!old) return b;
      const out = Object.assign({}, old, b);
      // Transition events carry the state only: keep the window's numbers.
      if (!b.calls && old.calls && (!b.spark || !b.spark.length)) {
        out.calls = old.calls;
        out.failures = old.failures;
        out.errorRate = old.errorRate;
      }
      if (!b.spark || !b.spark.length) out.spark = old.spark;
      if (!('override' in b)) out.override = null;
      if (!('untilMs' in b)) delete out.untilMs;
      return out;
    };

    function enqueue(item) {
      queue.push(item);
      if (!scheduled) {
        scheduled = true;
        requestAnimationFrame(flush);
        setTimeout(flush, 250); // a hidden tab gets no frames
      }
    }

    function flush() {
      if (!scheduled) return;
      scheduled = false;
      const items = queue.splice(0);
      const dirty = new Set();
      let all = false;
      let transitions = 0;
      let snapshots = 0;
      for (const it of items) {
        if (it.kind === 'list' || it.kind === 'snapshot') {
          if (it.kind === 'list' && snapshotSeen) continue; // the stream's snapshot is newer
          if (it.kind === 'snapshot') {
            snapshotSeen = true;
            snapshots++;
          }
          const previous = new Map(model);
          model.clear();
          for (const b of it.breakers || []) {
            const k = keyOf(b);
            const old = previous.get(k);
            model.set(k, old && old.generation > b.generation ? old : b);
          }
          all = true;
        } else if (it.kind === 'transition' || it.kind === 'local') {
          const b = it.breaker;
          if (it.kind === 'transition') transitions++;
          if (!b || !b.name) continue;
          const k = keyOf(b);
          const old = model.get(k);
          if (old && old.generation > b.generation) continue;
          model.set(k, merge(old, b));
          dirty.add(k);
        } else if (it.kind === 'rates') {
          const rates = it.rates || {};
          for (const [k, b] of model) {
            const rate = rates[k];
            const er = rate ? +rate[0] || 0 : 0;
            const calls = rate ? +rate[1] || 0 : 0;
            const spark = (b.spark || []).concat([er]).slice(-60);
            model.set(k, Object.assign({}, b, { errorRate: er, calls, failures: Math.round((calls * er) / 100), spark }));
            dirty.add(k);
          }
        }
      }
      if (all) syncAll();
      else for (const k of dirty) syncOne(k);
      if (items.some((it) => it.registries)) addRegistryOptions(items.flatMap((it) => it.registries || []));
      if (!filter.registry) addRegistryOptions(Array.from(new Set(Array.from(model.values(), (b) => b.registry))));
      stats.transitions += transitions;
      stats.snapshots += snapshots;
      stats.rows = rows.size;
      stats.lastAppliedAt = performance.now();
      if (transitions) stats.lastTransitionAt = stats.lastAppliedAt;
      if (all) ready();
      renderSummary();
    }

    // -- loading and filters

    async function load() {
      const mine = ++generationOfLoad;
      if (stream) stream.close();
      snapshotSeen = false;
      model.clear();
      stream = eventStream(filter.registry, {
        snapshot: (d) => enqueue({ kind: 'snapshot', breakers: d.breakers }),
        transition: (d) => enqueue({ kind: 'transition', breaker: d.breaker, from: d.from }),
        rates: (d) => {
          stats.rates++;
          enqueue({ kind: 'rates', rates: d.rates });
        },
      });
      try {
        const d = await api('/api/v1/breakers' + query({ registry: filter.registry }));
        if (mine !== generationOfLoad) return;
        enqueue({ kind: 'list', breakers: d.breakers, registries: d.registries || [] });
      } catch (e) {
        if (e.status !== 401) flash('Breakers could not be loaded: ' + errorText(e));
        ready();
      }
    }

    function filtersChanged(reload) {
      setURL({ registry: filter.registry, state: filter.state, q: filter.q });
      if (reload) {
        for (const r of rows.values()) r.tr.remove();
        rows.clear();
        order = [];
        load();
      } else {
        syncAll();
        stats.rows = rows.size;
        renderSummary();
      }
    }

    registrySelect.addEventListener('change', () => {
      filter.registry = registrySelect.value;
      filtersChanged(true);
    });
    stateSelect.addEventListener('change', () => {
      filter.state = stateSelect.value;
      filtersChanged(false);
    });
    let searchTimer = 0;
    search.addEventListener('input', () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => {
        filter.q = search.value.trim();
        filtersChanged(false);
      }, 150);
    });

    tbody.addEventListener('click', (e) => {
      const btn = e.target.closest('[data-action]');
      if (!btn) return;
      const tr = btn.closest('tr');
      const b = tr && model.get(tr.dataset.key);
      if (!b) return;
      openAction(btn, b.registry, b.name, btn.dataset.action, (res) => {
        if (res.after) enqueue({ kind: 'local', breaker: res.after });
      });
    });

    // Times tick; one pass every 2 s, only cells whose text changes are touched.
    setInterval(() => {
      for (const r of rows.values()) {
        if (r.b) {
          setText(r.since, r.b.sinceMs ? duration(Date.now() - r.b.sinceMs) : '—');
          if (r.b.override && r.b.override.untilMs) renderOverride(r, r.b.override);
        }
      }
    }, 2000);

    load();
  }

  // ---- /breaker ------------------------------------------------------------

  function pageBreaker(main) {
    const params = new URLSearchParams(location.search);
    const registry = params.get('registry') || 'default';
    const name = params.get('name') || '';
    if (!name) {
      const reg = h('input', { name: 'registry', value: registry, 'aria-label': 'Registry' });
      const nm = h('input', { name: 'name', placeholder: 'breaker name', 'aria-label': 'Breaker', required: true });
      clear(main).append(h('div', { class: 'toolbar' }, h('h1', { text: 'Breaker' })),
        h('form', { class: 'panel pick', method: 'get', action: '/breaker' },
          h('p', { class: 'muted', text: 'Pick a breaker on the Breakers page, or name one:' }), reg, ' / ', nm,
          h('button', { type: 'submit', class: 'primary', text: 'Show' })));
      ready();
      return;
    }
    const key = registry + '/' + name;
    let timer = 0;
    let last = null;

    async function load() {
      try {
        const d = await api('/api/v1/breaker?registry=' + enc(registry) + '&name=' + enc(name));
        last = d;
        render(d);
      } catch (e) {
        if (e.status === 404) {
          clear(main).append(crumbs(), h('div', { class: 'panel empty' }, h('p', { text: 'No breaker ' + key + ' is known to the fleet.' })));
          ready();
        } else if (last && e.status !== 401) {
          flash('The breaker could not be refreshed: ' + errorText(e));
        } else {
          failed(main, e);
        }
      }
    }

    function later(ms) {
      clearTimeout(timer);
      timer = setTimeout(load, ms);
    }

    function crumbs() {
      return h('nav', { class: 'crumbs' }, h('a', { href: '/breakers', text: 'Breakers' }), ' › ',
        h('a', { href: '/breakers?registry=' + enc(registry), text: registry }), ' › ', h('span', { text: name }));
    }

    function fact(term, ...value) {
      return [h('dt', { text: term }), h('dd', null, value)];
    }

    function render(d) {
      const b = d.breaker || {};
      const w = d.window || {};
      const o = b.override;
      const head = h('div', { class: 'detail-head' },
        h('h1', { class: 'mono', text: b.name }), stateBadge(b.state),
        h('span', { class: 'muted', text: 'generation ' + b.generation }),
        h('span', { class: 'spacer' }),
        actionButtons(b.registry, b.name, false));
      const facts = h('dl', { class: 'facts' },
        fact('Registry', h('a', { href: '/breakers?registry=' + enc(b.registry), text: b.registry })),
        fact('Policy', h('a', { href: '/policies?registry=' + enc(b.registry) + '&name=' + enc(b.policy), text: b.policy })),
        fact('State', stateBadge(b.state), ' for ' + duration(Date.now() - b.sinceMs), h('span', { class: 'muted', text: ' (since ' + stamp(b.sinceMs) + ')' })),
        b.evaluatedState && b.evaluatedState !== b.state ? fact('Rules say', stateBadge(b.evaluatedState)) : null,
        b.untilMs ? fact(b.state === 'OPEN' ? 'Half-opens' : 'Until', ago(b.untilMs), h('span', { class: 'muted', text: ' (' + stamp(b.untilMs) + ')' })) : null,
        fact('Reason', b.reason || '—'));
      const overrideBox = h('section', { class: 'panel' }, h('h2', { text: 'Override' }),
        o ? h('div', { class: 'override-box' },
          h('span', { class: 'ov ov-' + o.kind, text: label(o.kind) }),
          h('span', { text: o.untilMs ? ' lifts ' + ago(o.untilMs) + ' (' + stamp(o.untilMs) + ')' : ' until lifted' }),
          h('p', { class: 'override-reason', text: o.reason || '(no reason given)' }))
          : h('p', { class: 'muted', text: 'None: the breaker follows its rules.' }));
      const windowBox = h('section', { class: 'panel' }, h('h2', { text: 'Window' }),
        h('div', { class: 'stats' },
          stat('Calls', num(w.calls)), stat('Failures', num(w.failures)), stat('Error rate', pct(w.errorRate), w.errorRate >= 50 ? 'hot' : ''),
          stat('Slow', num(w.slow)), stat('Slow rate', pct(w.slowRate)), stat('Consecutive failures', num(d.consecutiveFailures)),
          stat('Permits out', num(d.outstandingPermits)), stat('Trips', num(d.trips))),
        h('div', { class: 'spark-big' }, sparkline(b.spark, 560, 56), h('span', { class: 'muted small', text: 'error rate, last 5 minutes (0–100%)' })));
      const contributions = h('section', { class: 'panel' }, h('h2', { text: 'Contributing clients' }),
        (d.contributions || []).length ? h('table', { class: 'grid' },
          h('thead', null, h('tr', null, ['Client', 'Calls', 'Failures', 'Slow', 'Error rate', 'Last report'].map((t) => h('th', { text: t })))),
          h('tbody', null, d.contributions.map((c) => h('tr', null,
            h('td', { class: 'mono nowrap', text: c.client }), h('td', { class: 'num', text: num(c.calls) }),
            h('td', { class: 'num', text: num(c.failures) }), h('td', { class: 'num', text: num(c.slow) }),
            h('td', { class: 'num', text: c.calls ? pct((100 * c.failures) / c.calls) : '—' }),
            h('td', { text: ago(c.lastReportAtMs), title: stamp(c.lastReportAtMs) })))))
          : h('p', { class: 'muted', text: 'No client has outcomes in the window.' }));
      const history = h('section', { class: 'panel' }, h('h2', { text: 'Transitions' }),
        (d.transitions || []).length ? h('table', { class: 'grid' },
          h('thead', null, h('tr', null, ['When', 'Change', 'Gen', 'Reason', 'Clients'].map((t) => h('th', { text: t })))),
          h('tbody', null, d.transitions.map((t) => h('tr', null,
            h('td', { class: 'nowrap', text: stamp(t.atMs), title: ago(t.atMs) }),
            h('td', { class: 'nowrap' }, stateBadge(t.from), ' → ', stateBadge(t.to)),
            h('td', { class: 'num', text: t.generation }), h('td', { class: 'reason-wrap', text: t.reason || '' }),
            h('td', { class: 'mono small', text: (t.clients || []).join(', ') })))))
          : h('p', { class: 'muted', text: 'None since this fuseboxd started (operators\u2019 actions are in the audit log).' }));
      clear(main).append(crumbs(), head, h('div', { class: 'detail-grid' },
        h('div', null, h('section', { class: 'panel' }, facts), overrideBox, contributions),
        h('div', null, windowBox, history)));
      ready();
    }

    function stat(title, value, cls) {
      return h('div', { class: 'stat' + (cls ? ' stat-' + cls : '') }, h('div', { class: 'stat-v', text: value }), h('div', { class: 'stat-k', text: title }));
    }

    main.addEventListener('click', (e) => {
      const btn = e.target.closest('[data-action]');
      if (!btn) return;
      openAction(btn, registry, name, btn.dataset.action, () => later(0));
    });

    eventStream(registry, {
      transition: (d) => { if (d.breaker && keyOf(d.breaker) === key) later(100); },
      snapshot: () => later(200),
      rates: () => later(0),
    });
    load();
  }

  // ---- /policies -------------------------------------------------------------

  async function pagePolicies(main) {
    const params = new URLSearchParams(location.search);
    let selected = { registry: params.get('registry') || '', name: params.get('name') || '' };
    const list = h('div', { class: 'policy-list' });
    const side = h('section', { class: 'panel policy-side', id: 'policy-detail' },
      h('p', { class: 'muted', text: 'Choose a policy to see its versions and compare two of them.' }));
    clear(main).append(h('div', { class: 'toolbar' }, h('h1', { text: 'Policies' })), h('div', { class: 'two-col' }, list, side));
    let d;
    try {
      d = await api('/api/v1/policies');
    } catch (e) {
      failed(main, e);
      return;
    }
    for (const r of d.registries || []) {
      list.append(h('section', { class: 'panel' },
        h('h2', null, r.name, ' ', h('span', { class: 'muted small', text: 'registry version ' + r.version })),
        (r.policies || []).length ? h('table', { class: 'grid' },
          h('thead', null, h('tr', null, ['Policy', 'Version', 'Updated', 'By'].map((t) => h('th', { text: t })))),
          h('tbody', null, r.policies.map((p) => h('tr', {
            class: 'pick-row' + (selected.registry === r.name && selected.name === p.name ? ' selected' : ''),
            'data-registry': r.name, 'data-policy': p.name,
          },
          h('td', null, h('a', { href: '/policies?registry=' + enc(r.name) + '&name=' + enc(p.name), text: p.name })),
          h('td', { class: 'num', text: p.version }),
          h('td', { text: ago(p.updatedAtMs), title: stamp(p.updatedAtMs) }),
          h('td', { class: 'mono small', text: p.updatedBy || '' })))))
          : h('p', { class: 'muted', text: 'No policies.' })));
    }
    if (!(d.registries || []).length) list.append(h('div', { class: 'panel empty' }, h('p', { class: 'muted', text: 'No registries yet.' })));
    list.addEventListener('click', (e) => {
      const row = e.target.closest('[data-policy]');
      if (!row) return;
      e.preventDefault();
      for (const s of list.querySelectorAll('.selected')) s.classList.remove('selected');
      row.classList.add('selected');
      selected = { registry: row.dataset.registry, name: row.dataset.policy };
      setURL(selected);
      showPolicy();
    });
    if (selected.name) await showPolicy();
    ready();

    async function showPolicy() {
      const { registry, name } = selected;
      clear(side).append(h('h2', { text: registry + ' / ' + name }), h('p', { class: 'muted', text: 'Loading versions…' }));
      let versions;
      try {
        versions = (await api('/api/v1/policy/versions?registry=' + enc(registry) + '&name=' + enc(name))).versions || [];
      } catch (e) {
        clear(side).append(h('h2', { text: registry + ' / ' + name }), h('p', { class: 'error-text', text: errorText(e) }));
        return;
      }
      // The id a diff asks for: the version's number as the list gives it.
      const idOf = (v) => (v.registryVersion !== undefined ? v.registryVersion : v.version);
      const nameOf = (v) => (v.version !== undefined ? 'v' + v.version + ' · ' : '') + 'r' + v.registryVersion + ' · ' + stamp(v.atMs).slice(0, 16) +
        (v.kind === 'UPDATED' ? '' : ' · ' + v.kind.toLowerCase());
      const fromSel = h('select', { id: 'diff-from', 'aria-label': 'From version' }, versions.map((v) => h('option', { value: idOf(v), text: nameOf(v) })));
      const toSel = h('select', { id: 'diff-to', 'aria-label': 'To version' }, versions.map((v) => h('option', { value: idOf(v), text: nameOf(v) })));
      if (versions.length) {
        toSel.value = String(idOf(versions[0]));
        fromSel.value = String(idOf(versions[Math.min(1, versions.length - 1)]));
      }
      const out = h('div', { class: 'diff-out' });
      const table = h('table', { class: 'grid versions' },
        h('thead', null, h('tr', null, ['Version', 'Kind', 'When', 'Actor', 'Reason'].map((t) => h('th', { text: t })))),
        h('tbody', null, versions.map((v) => h('tr', null,
          h('td', { class: 'num', text: (v.version !== undefined ? 'v' + v.version + ' ' : '') + 'r' + v.registryVersion }),
          h('td', null, h('span', { class: 'kind kind-' + v.kind, text: v.kind })),
          h('td', { class: 'nowrap', text: stamp(v.atMs), title: ago(v.atMs) }),
          h('td', { class: 'mono small', text: v.actor || '' }), h('td', { text: v.reason || '' })))));
      clear(side).append(h('h2', { text: registry + ' / ' + name }), h('div', { class: 'table-scroll' }, table),
        h('div', { class: 'diff-bar' }, h('span', { text: 'Compare' }), fromSel, h('span', { text: '→' }), toSel,
          h('button', { type: 'button', class: 'primary', id: 'diff-go', text: 'Show diff', onclick: compare })),
        out);
      fromSel.addEventListener('change', compare);
      toSel.addEventListener('change', compare);
      if (versions.length) compare();

      async function compare() {
        clear(out).append(h('p', { class: 'muted', text: 'Comparing…' }));
        try {
          const diff = await api('/api/v1/policy/diff?registry=' + enc(registry) + '&name=' + enc(name) + '&from=' + enc(fromSel.value) + '&to=' + enc(toSel.value));
          const lines = diff.lines || [];
          const added = lines.filter((l) => l.op === '+').length;
          const removed = lines.filter((l) => l.op === '-').length;
          clear(out).append(
            h('p', { class: 'muted small' }, h('span', { class: 'diff-add-n', text: '+' + added }), ' ', h('span', { class: 'diff-del-n', text: '−' + removed }),
              fromSel.value === toSel.value ? ' (the same version)' : ''),
            h('pre', { class: 'diff', id: 'diff' }, lines.map((l) => h('div', {
              class: l.op === '+' ? 'diff-add' : l.op === '-' ? 'diff-del' : 'diff-ctx',
            }, h('span', { class: 'diff-op', text: l.op === ' ' ? ' ' : l.op }), l.text))));
        } catch (e) {
          clear(out).append(h('p', { class: 'error-text', text: errorText(e) }));
        }
      }
    }
  }

  // ---- /audit ----------------------------------------------------------------

  async function pageAudit(main) {
    const params = new URLSearchParams(location.search);
    const SINCE = [['1h', 'Last hour', 3600e3], ['24h', 'Last 24 hours', 86400e3], ['7d', 'Last 7 days', 7 * 86400e3], ['all', 'All time', 0]];
    const since = h('select', { id: 'audit-since', 'aria-label': 'Since' }, SINCE.map(([v, t]) => h('option', { value: v, text: t })));
    const action = h('select', { id: 'audit-action', 'aria-label': 'Action' }, h('option', { value: '', text: 'All actions' }),
      AUDIT_ACTIONS.map((a) => h('option', { value: a, text: a.replace(/_/g, ' ').toLowerCase() })));
    const registry = h('select', { id: 'audit-registry', 'aria-label': 'Registry' }, h('option', { value: '', text: 'All registries' }));
    const breaker = h('input', { id: 'audit-breaker', type: 'search', placeholder: 'Breaker prefix', 'aria-label': 'Breaker prefix' });
    const denied = h('input', { id: 'audit-denied', type: 'checkbox' });
    const tbody = h('tbody', { id: 'audit-rows' });
    const note = h('p', { class: 'muted small' });
    clear(main).append(
      h('div', { class: 'toolbar' }, h('h1', { text: 'Audit log' }), since, action, registry, breaker,
        h('label', { class: 'check' }, denied, ' denied only')),
      h('div', { class: 'panel table-wrap' }, h('table', { class: 'grid audit' },
        h('thead', null, h('tr', null, ['When', 'Actor', 'Action', 'Target', 'Reason', 'Duration', 'Result'].map((t) => h('th', { text: t })))),
        tbody)), note);

    since.value = SINCE.some((s) => s[0] === params.get('since')) ? params.get('since') : '24h';
    action.value = AUDIT_ACTIONS.includes(params.get('action')) ? params.get('action') : '';
    breaker.value = params.get('breaker') || '';
    denied.checked = params.get('denied') === '1';
    const wantRegistry = params.get('registry') || '';
    registry.append(h('option', { value: wantRegistry, text: wantRegistry }));
    if (!wantRegistry) registry.lastChild.remove();
    registry.value = wantRegistry;

    api('/api/v1/policies').then((d) => {
      for (const r of d.registries || []) if (r.name !== wantRegistry) registry.append(h('option', { value: r.name, text: r.name }));
    }).catch(() => {});

    let seq = 0;
    async function load() {
      const mine = ++seq;
      setURL({ since: since.value === '24h' ? '' : since.value, action: action.value, registry: registry.value, breaker: breaker.value.trim(), denied: denied.checked ? '1' : '' });
      const ms = SINCE.find((s) => s[0] === since.value)[2];
      const q = query({
        sinceMs: ms ? Date.now() - ms : '', action: action.value, registry: registry.value, breaker: breaker.value.trim(),
        deniedOnly: denied.checked ? 'true' : '', limit: 500,
      });
      let d;
      try {
        d = await api('/api/v1/audit' + q);
      } catch (e) {
        if (e.status !== 401) flash('The audit log could not be read: ' + errorText(e));
        ready();
        return;
      }
      if (mine !== seq) return;
      clear(tbody);
      const frag = document.createDocumentFragment();
      for (const a of d.entries || []) {
        const target = a.breaker ? h('a', { href: breakerHref(a.registry, a.breaker), text: a.registry + '/' + a.breaker }) : a.policy || a.registry || '';
        frag.append(h('tr', { class: a.allowed ? '' : 'denied', 'data-id': a.id },
          h('td', { class: 'nowrap', text: stamp(a.atMs), title: ago(a.atMs) }),
          h('td', { class: 'mono small', text: a.actor || '(fuseboxd)', title: (a.roles || []).join(', ') }),
          h('td', null, h('span', { class: 'kind kind-' + a.action, text: a.action })),
          h('td', { class: 'mono small' }, target),
          h('td', { class: 'reason-wrap', text: a.reason || '' }),
          h('td', { class: 'num', text: a.durationMs ? duration(a.durationMs) : '' }),
          h('td', null, a.allowed ? h('span', { class: 'ok-text', text: 'allowed' }) : h('span', { class: 'error-text', text: 'denied: ' + (a.deniedReason || '') }))));
      }
      tbody.append(frag);
      const n = (d.entries || []).length;
      note.textContent = n ? n + ' entries, newest first' + (d.truncated ? '; older ones match too (narrow the filters).' : '.') : 'No entries match.';
      ready();
    }

    for (const el of [since, action, registry, denied]) el.addEventListener('change', load);
    let t = 0;
    breaker.addEventListener('input', () => {
      clearTimeout(t);
      t = setTimeout(load, 250);
    });
    load();
  }

  // ---- /clients ----------------------------------------------------------------

  function pageClients(main) {
    const tbody = h('tbody', { id: 'client-rows' });
    const note = h('p', { class: 'muted small' });
    const counts = h('div', { class: 'summary' });
    clear(main).append(h('div', { class: 'toolbar' }, h('h1', { text: 'Clients' })), counts,
      h('div', { class: 'panel table-wrap' }, h('table', { class: 'grid clients' },
        h('thead', null, h('tr', null, ['Client', 'Mode', 'Last report'].map((t) => h('th', { text: t })))), tbody)), note);
    async function load() {
      let d;
      try {
        d = await api('/api/v1/clients');
      } catch (e) {
        if (e.status !== 401) flash('The clients could not be read: ' + errorText(e));
        ready();
        return;
      }
      const list = (d.clients || []).slice().sort((a, b) => (a.client < b.client ? -1 : 1));
      clear(tbody);
      for (const c of list) {
        tbody.append(h('tr', null, h('td', { class: 'mono', text: c.client }),
          h('td', null, h('span', { class: 'mode mode-' + c.mode, text: c.mode })),
          h('td', { text: ago(c.lastReportAtMs), title: stamp(c.lastReportAtMs) })));
      }
      const local = list.filter((c) => c.mode === 'LOCAL').length;
      clear(counts).append(h('span', { class: 'chip chip-CLOSED' }, h('span', { class: 'chip-n', text: list.length - local }), ' fleet'),
        h('span', { class: 'chip' + (local ? ' chip-HALF_OPEN' : ' chip-zero') }, h('span', { class: 'chip-n', text: local }), ' local'));
      note.textContent = (d.complete === false
        ? 'This replica (' + d.answeredBy + ') is a follower: only the leader knows every client. '
        : (list.length ? '' : 'No client has reported yet. ')) + 'Answered by ' + (d.answeredBy || '?') + ' at ' + stamp(Date.now()) + '.';
      ready();
    }
    load();
    setInterval(load, 10000);
  }

  // ---- /health -----------------------------------------------------------------

  function pageHealth(main) {
    const body = h('div');
    clear(main).append(h('div', { class: 'toolbar' }, h('h1', { text: 'Fleet health' })), body);
    const reasonsList = (reasons) => h('ul', { class: 'reasons' }, (reasons || []).map((r) =>
      h('li', null, typeof r === 'string' ? r : [statusBadge(r.status), ' ', h('span', { class: 'mono small muted', text: r.code || '' }), ' ', r.message || ''])));
    async function load() {
      let d;
      try {
        d = await api('/api/v1/health');
      } catch (e) {
        if (e.status !== 401) flash('The fleet health could not be read: ' + errorText(e));
        ready();
        return;
      }
      const overview = h('section', { class: 'panel health-top' },
        h('div', { class: 'health-status' }, h('span', { class: 'big-status status-' + String(d.status).toLowerCase(), id: 'health-status', text: d.status })),
        h('dl', { class: 'facts' },
          h('dt', { text: 'Store' }), h('dd', { text: d.storeAvailable ? 'available' : 'refusing writes' }),
          h('dt', { text: 'Replicas serving' }), h('dd', { text: d.replicasServing + ' of ' + d.replicas }),
          h('dt', { text: 'Clients in local mode' }), h('dd', { text: d.localModeClients }),
          h('dt', { text: 'Answered by' }), h('dd', { text: (d.answeredBy || '?') + ' at ' + stamp(d.atMs) })),
        (d.reasons || []).length ? reasonsList(d.reasons) : h('p', { class: 'muted', text: 'Nothing to report.' }));
      const regs = (d.registries || []).map((r) => {
        const bad = (r.breakers || []).filter((b) => String(b.status).toLowerCase() !== 'healthy');
        return h('section', { class: 'panel' },
          h('div', { class: 'reg-head' }, h('h2', { text: r.name }), statusBadge(r.status),
            h('span', { class: 'counts' }, h('span', { class: 'c-healthy', text: r.healthy + ' healthy' }), ' · ',
              h('span', { class: 'c-degraded', text: r.degraded + ' degraded' }), ' · ', h('span', { class: 'c-critical', text: r.critical + ' critical' }))),
          bad.length ? h('table', { class: 'grid' },
            h('thead', null, h('tr', null, ['Breaker', 'State', 'Status', 'Why', 'Calls', 'Failures', 'Recent trips'].map((t) => h('th', { text: t })))),
            h('tbody', null, bad.map((b) => h('tr', null,
              h('td', null, h('a', { href: breakerHref(r.name, b.name), text: b.name })),
              h('td', null, stateBadge(b.state)), h('td', null, statusBadge(b.status)),
              h('td', null, reasonsList(b.reasons)), h('td', { class: 'num', text: num(b.calls) }),
              h('td', { class: 'num', text: num(b.failures) }), h('td', { class: 'num', text: num(b.recentTrips) })))))
            : h('p', { class: 'muted', text: 'Every breaker is healthy.' }));
      });
      append(clear(body), [overview, regs.length ? regs : h('div', { class: 'panel empty' }, h('p', { class: 'muted', text: 'No registries yet.' }))]);
      ready();
    }
    load();
    setInterval(load, 10000);
  }

  // ---- start -------------------------------------------------------------------

  const PAGES = {
    '/breakers': pageBreakers,
    '/breaker': pageBreaker,
    '/policies': pagePolicies,
    '/audit': pageAudit,
    '/clients': pageClients,
    '/health': pageHealth,
  };

  async function start() {
    const main = $('#app');
    if (!main) return;
    const f = $('#flash');
    if (f) f.addEventListener('click', () => { f.hidden = true; });
    if (!/^(admin|reader)$/.test(session.role) || !session.csrf || session.csrf.includes('{{')) {
      try {
        Object.assign(session, await api('/api/v1/session'));
      } catch (e) {
        failed(main, e);
        return;
      }
      const who = $('#user-name');
      if (who) who.textContent = session.name;
    }
    const path = location.pathname.replace(/\/+$/, '') || '/breakers';
    for (const a of document.querySelectorAll('.nav a')) {
      const page = '/' + a.dataset.page;
      if (page === path) a.classList.add('active');
    }
    const page = PAGES[path] || pageBreakers;
    document.title = (path.slice(1) || 'breakers').replace(/^./, (c) => c.toUpperCase()) + ' · Fusebox';
    try {
      await page(main);
    } catch (e) {
      failed(main, e);
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
