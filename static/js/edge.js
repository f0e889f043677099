/* edge tracker v1: docs/protocol.md, static/js/README.md */
((w, d, nav) => {
'use strict';
const warn = (...a) => { try { console.warn('[edge]', ...a) } catch (e) {} };
// safe(): never throw into the page
const safe = f => (...a) => { try { return f(...a) } catch (e) { warn(e) } };
try {
if (w.edge && w.edge.state) return;
const me = d.currentScript || [...d.scripts].find(s => /\/edge\.js(\?|$)/.test(s.src));
const attr = n => me && me.getAttribute('data-' + n);
const site = attr('site');
if (!site) return warn('no data-site');
const http = (attr('endpoint') || new URL(me.src, location).origin).replace(/\/+$/, '').replace(/^ws/, 'http');
const q = '?site=' + encodeURIComponent(site), L = 'localStorage', S = 'sessionStorage';

const rnd = n => [...crypto.getRandomValues(new Uint8Array(n))];
const hex = () => rnd(16).map(b => (b + 256).toString(16).slice(1)).join('');
const okId = v => /^[0-9a-f]{32}$/.test(v) && !/^(.)\1+$/.test(v);
const cut = (s, n) => String(s || '').slice(0, n);
const url = () => cut(location.href, 2048);
const page = () => ({ title: cut(d.title, 300), referrer: cut(d.referrer, 2048) });

// storage or memory; written only with consent
const mem = {};
const get = (a, k) => { try { const v = w[a].getItem(k); if (v != null) return v } catch (e) {} return mem[k] };
const put = (a, k, v) => { mem[k] = v; try { v == null ? w[a].removeItem(k) : w[a].setItem(k, v) } catch (e) {} };
const save = () => put(S, 'edge_outbox', JSON.stringify(outbox));

// consent: true, null (buffer), false; ok: given (edge('consent', true))
let consent, ok, vid, sid, seq = 0, sent, beaconed, outbox = [], pending = [], subs = {};
let ws, ready, tries = 0, timer, flushT, dead, viewed, hold = 0, hsent = 0, pv;

const emit = (name, ...a) => (subs[name] || []).forEach(f => safe(f)(...a));

const start = () => {
  vid = get(L, 'edge_vid');
  okId(vid) || put(L, 'edge_vid', vid = hex());
  sid = get(S, 'edge_sid');
  seq = sent = beaconed = 0; outbox = [];
  if (okId(sid)) {
    try { outbox = JSON.parse(get(S, 'edge_outbox')).filter(e => e.seq > 0) } catch (e) {}
    seq = Math.max(+get(S, 'edge_seq') || 0, ...outbox.map(e => e.seq));
  }
  // marker left: copied tab (or crash): new session
  if (get(S, 'edge_live') || !okId(sid)) {
    put(S, 'edge_sid', sid = hex());
    seq = 0; outbox.forEach(e => e.seq = ++seq);
    put(S, 'edge_seq', seq); save();
  }
  put(S, 'edge_live', 1);
  pending.splice(0).forEach(enqueue);
  // preview link
  (pv = new URLSearchParams(location.search).get('edge_preview') || get(S, 'edge_preview'))
    ? d.head.append(Object.assign(d.createElement('script'), { src: http + '/edge-preview.js', onload: connect, onerror: connect }))
    : connect();
};

const stop = () => {
  put(L, 'edge_vid'); ['sid', 'seq', 'outbox', 'live', 'preview'].forEach(k => put(S, 'edge_' + k));
  vid = sid = null; seq = 0; outbox = []; pending = []; viewed = 0;
  clearTimeout(timer);
  ws && ws.close(); ws = ready = 0;
};

const track = (type, props) => {
  const ev = { type, url: url(), at: Date.now(), ...props, type };
  if (typeof type != 'string' || JSON.stringify(ev).length > 2e4) return warn('bad event', type);
  if (type == 'page_view' && consent !== false) viewed = 1;
  enqueue(ev);
};

const enqueue = ev => {
  if (consent !== true) return consent === null && pending.push(ev) > 200 && pending.shift();
  ev.seq = ++seq; ev.id = rnd(12).map(b => (b & 31).toString(32)).join('');
  put(S, 'edge_seq', seq);
  outbox.push(ev) > 200 && outbox.shift();
  save();
  flushT = flushT || setTimeout(safe(flush));
};

// <= 100 events, 20k chars per message
const batches = (list, fn) => {
  let b = [], n = 0;
  list.forEach(e => {
    const l = JSON.stringify(e).length;
    if (b.length > 99 || b.length && n + l > 2e4) { fn(b); b = []; n = 0 }
    b.push(e); n += l;
  });
  b.length && fn(b);
};
const last = b => b[b.length - 1].seq;

const flush = () => {
  flushT = 0;
  const wait = hold - Date.now(); // the server said busy: not before its retry_ms
  if (wait > 0) return flushT = setTimeout(safe(flush), wait);
  ready && batches(outbox.filter(e => e.seq > sent), b => { send({ type: 'events', events: b }); sent = last(b) });
};
const send = m => { try { ws.send(JSON.stringify(m)) } catch (e) {} };

// leaving: beacon the outbox, keep it
const beacon = () => pv || batches(outbox.filter(e => e.seq > beaconed), b => {
  if (nav.sendBeacon(http + '/collect' + q, JSON.stringify({ type: 'events', visitor: vid, session: sid, consent: ok, events: b }))) beaconed = last(b);
});

const connect = () => {
  if (ws || dead || consent !== true) return;
  clearTimeout(timer);
  const s = ws = new WebSocket(http.replace(/^http/, 'ws') + '/ws' + q);
  // the first batch rides with the hello
  s.onopen = safe(() => { let first = []; hsent = 0; batches(outbox, b => first.length || (first = b));
    first.length && Date.now() >= hold && (hsent = last(first));
    send({ type: 'hello', v: 1, visitor: vid, session: sid, url: url(), ...page(),
      screen: [screen.width, screen.height], lang: nav.language, page_lang: d.documentElement.lang, consent: ok, preview: pv, events: hsent ? first : undefined }) });
  s.onmessage = safe(e => recv(JSON.parse(e.data)));
  s.onclose = safe(e => {
    if (ws != s) return;
    ws = ready = 0;
    if (e.code == 1008 || e.code == 1009) { dead = 1; return warn('closed by server', e.code, '- not reconnecting') }
    // 1013 (busy): the server's retry, then backoff
    const busy = e.code == 1013 ? +(/retry in (\d+)/.exec(e.reason) || [])[1] || 1e3 : 0;
    timer = setTimeout(safe(connect), busy + Math.random() * Math.min(3e4, 500 * 2 ** tries++));
  });
};

const recv = m => {
  const t = m.type, full = outbox.some(e => e.seq <= m.ack && !/^(custom|widget)$/.test(e.type));
  if (m.ack >= 0) { outbox = outbox.filter(e => e.seq > m.ack); save() }
  if (t == 'welcome') {
    css = m.css || css;
    okId(m.visitor) && m.visitor != vid && put(L, 'edge_vid', vid = m.visitor);
    m.ack > seq && put(S, 'edge_seq', seq = m.ack);
    ready = 1; tries = 0; sent = hsent;
    flush();
  }
  if (t == 'error') {
    warn(m.code, m.message);
    if (m.code == 'store_unavailable' || m.code == 'busy') {
      sent = 0; hold = Date.now() + (m.retry_ms || 5e3); flushT = flushT || setTimeout(safe(flush));
    }
  }
  if (t == 'coupon' && shown[m.campaign]) shown[m.campaign].innerHTML = css + m.html;
  // an item without html: sent on this page already (docs/protocol.md)
  t == 'decisions' ? (decided = decided || Date.now() - t0,
    (m.items = m.items || []).forEach(it => it.html = htmls[it.campaign] = it.html || htmls[it.campaign]), show(m.items, full), emit(t, m.items, m)) : emit(t, m);
};

// widgets: the server decides whether, the tracker when
let css = '', armed = {}, popup, shown = {}, htmls = {}, decided = 0, away = 0, gone = 0;
const t0 = Date.now(), slotWait = +attr('slot-timeout') || 1000;
// a slot out of sight can be filled late: nobody sees its content change
const unseen = el => { const r = el.getBoundingClientRect(); return r.bottom < 0 || r.top > innerHeight };
const report = ({ campaign, variant, step }, action) => track('widget', { campaign, variant, action, step });
const host = (it, el) => {
  const h = d.createElement('div');
  ['campaign', 'variant', 'placement'].forEach(k => h.setAttribute('data-edge-' + k, it[k]));
  const r = h.attachShadow({ mode: 'open' });
  r.innerHTML = css + it.html;
  on(r, 'click', e => {
    const c = e.target.closest('[data-edge-close],[data-edge-click]');
    if (!c) return;
    if (c.hasAttribute('data-edge-close')) { report(it, 'close'); h.remove(); popup = popup == h ? 0 : popup }
    else report(it, 'click'), c.dataset.edgeClick && report(it, 'convert');
  });
  on(r, 'submit', e => {
    e.preventDefault();
    const f = e.target, x = f.elements, email = x.email && x.email.value.trim(), nm = x.namedItem('name'), ok = x.consent;
    if (!f.reportValidity()) return; // a required consent box not ticked, ...
    if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email || '')) return x.email && x.email.focus();
    track('identify', { email, name: nm && nm.value.trim() || undefined, marketing_consent: ok && ok.checked });
    report(it, 'convert');
  });
  shown[it.campaign] = r;
  el ? el.replaceChildren(h) : d.body[it.placement == 'bar-top' ? 'prepend' : 'append'](h);
  return h;
};
// impression: half the widget (or half the viewport) on screen, page visible
const seen = (el, f) => {
  const t = Math.min(.5, innerHeight / 2 / (el.offsetHeight || 1)), o = new IntersectionObserver(es =>
    es.some(e => e.intersectionRatio >= t) && !d.hidden && (o.disconnect(), f()), { threshold: t });
  o.observe(el);
};
const fire = it => {
  let h, imp = () => report(it, 'impression');
  if (/^(popup|bar|bar-top|bar-bottom)$/.test(it.placement)) {
    if (it.holdout) return imp();
    if (it.placement != 'popup') h = host(it);
    else if (!popup) h = popup = host(it);
  } else {
    const el = d.querySelector('[data-edge-slot="' + CSS.escape(it.placement) + '"]');
    // a filled slot keeps its widget: no flicker
    if (!el || el.edgeShown || Date.now() - t0 > slotWait && !unseen(el)) return;
    el.edgeShown = 1;
    // a holdout keeps the slot as it is; its impression: the slot on screen
    if (it.holdout) return seen(el, imp);
    // keep the slot's height
    el.style.minHeight = el.offsetHeight + 'px'; h = host(it, el);
  }
  h && seen(h.shadowRoot.querySelector(':not(style)') || h, imp);
};
// full: answers a page event; it disarms what it leaves out, keeps the rest armed
const show = (items, full) => {
  for (const c in armed) full && !items.some(it => it.campaign == c) && (armed[c].abort(), delete armed[c]);
  items.forEach(it => {
    if (shown[it.campaign] || armed[it.campaign]) return;
    const g = it.trigger || {}, v = +g.value, a = new AbortController(), o = { signal: a.signal, passive: true };
    const go = () => a.signal.aborted || (a.abort(), fire(it));
    const add = (t, n, f) => on(t, n, f, o);
    let i, k = () => { clearTimeout(i); i = setTimeout(go, v * 1e3) };
    if (g.type == 'delay_s') k();
    else if (g.type == 'scroll_pct') add(w, 'scroll', () => (scrollY + innerHeight) * 100 >= v * d.documentElement.scrollHeight && go());
    else if (g.type == 'exit_intent') {
      // desktop: the pointer leaves through the top; touch: static/js/README.md
      add(d, 'mouseout', e => e.clientY <= 0 && !e.relatedTarget && go());
      if (matchMedia('(pointer:coarse)').matches) {
        let y = scrollY, at = Date.now(), f = 0;
        add(w, 'touchmove', () => f = Date.now());
        add(w, 'scroll', () => { const n = Date.now(), s = scrollY;
          s >= y || n - at > 300 ? (y = s, at = n) : y - s >= 200 && n - f < 1e3 && go() });
        add(d, 'visibilitychange', () => !d.hidden && away && go());
      }
    } else if (g.type == 'inactivity_s') {
      k(); ['mousemove', 'keydown', 'scroll', 'touchstart'].forEach(n => add(w, n, k));
    } else return fire(it);
    armed[it.campaign] = a;
  });
};

// public API
const queued = (w.edge && w.edge.q) || [];
const api = w.edge = safe((cmd, a, b) => {
  if (cmd == 'track') track(a, b);
  else if (cmd == 'identify') track('identify', a);
  else if (cmd == 'on') typeof b == 'function' && (subs[a] = subs[a] || []).push(b);
  else if (cmd != 'consent') warn('unknown command', cmd);
  else if (!a) { consent = false; stop() }
  else if (!ok) ok = true, consent ? ws && (ws.close(), ws = ready = 0, connect()) : (consent = true, dead = 0, start(), viewed || track('page_view', page()));
});
api.state = () => ({ visitor: vid, session: sid, seq, outbox: outbox.length, connected: !!ready, decidedMs: decided });

// GPC: refused until consent
consent = nav.globalPrivacyControl === true ? false : attr('consent') == 'required' ? null : true;
const on = (t, n, f, o) => t.addEventListener(n, safe(f), o);
on(w, 'pagehide', () => { beacon(); gone = 1; away = 0; sid && put(S, 'edge_live') });
// bfcache: re-read the counter, re-mark the tab
on(w, 'pageshow', e => { gone = 0; e.persisted && sid && (seq = Math.max(seq, +get(S, 'edge_seq') || 0), put(S, 'edge_live', 1)) });
// away: hidden, not left (pagehide)
on(d, 'visibilitychange', () => d.hidden && (away = !gone, beacon()));
consent && start();
track('page_view', page());
queued.forEach(args => api(...args));
} catch (e) { warn(e) }
})(window, document, navigator);
