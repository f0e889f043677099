/* edge preview overlay: loaded by edge.js only in a preview tab (a page opened
   with ?edge_preview=<token>, docs/configuration.md "Previews"). It keeps the
   token for the tab, and lists what the server decided for this page and why
   (the trace of `edge explain`) in a Shadow DOM panel. Server text is only
   ever put in as text, never as HTML. */
((w, d) => {
'use strict';
if (w.edgePreview || !w.edge) return;
const K = 'edge_preview';
const store = (k, v) => { try { v == null ? sessionStorage.removeItem(k) : sessionStorage.setItem(k, v) } catch (e) {} };
const fromUrl = new URLSearchParams(location.search).get(K);
fromUrl && store(K, fromUrl);

const host = d.createElement('div');
host.setAttribute('data-edge-preview', '');
const root = host.attachShadow({ mode: 'open' });
root.innerHTML = `<style>
:host { all: initial; position: fixed; right: 12px; bottom: 12px; z-index: 2147483647; }
.panel { font: 12px/1.45 system-ui, sans-serif; color: #1b1b1b; background: #fffdf5; border: 2px solid #c77700;
  border-radius: 8px; box-shadow: 0 4px 18px rgba(0,0,0,.25); width: min(380px, calc(100vw - 24px)); }
header { display: flex; gap: 6px; align-items: center; padding: 6px 8px; background: #c77700; color: #fff; }
header b { flex: 1; }
button { font: inherit; border: 1px solid #fff; background: transparent; color: inherit; border-radius: 4px; padding: 1px 6px; cursor: pointer; }
.body { max-height: 45vh; overflow: auto; padding: 6px 10px; }
.hidden .body { display: none; }
.grant { margin: 0 0 6px; }
.refused { color: #a40000; font-weight: 600; }
h3 { font-size: 12px; margin: 8px 0 2px; }
ul { margin: 0; padding-left: 16px; }
li { margin: 2px 0; overflow-wrap: anywhere; }
li.forced { font-weight: 600; }
li.shown::marker { content: "\\2713  "; color: #0a7a2f; }
</style><div class="panel"><header><b>edge preview</b><button data-toggle>hide</button><button data-end>end preview</button></header>
<div class="body"><p class="grant" data-grant>connecting…</p><h3>shown on this page</h3><ul data-shown><li>nothing yet</li></ul>
<h3>every campaign, and why</h3><ul data-trace></ul></div></div>`;
const $ = s => root.querySelector(s);
const el = (tag, text, cls) => { const e = d.createElement(tag); e.textContent = text; if (cls) e.className = cls; return e };

$('[data-toggle]').onclick = e => {
  const hidden = $('.panel').classList.toggle('hidden');
  e.target.textContent = hidden ? 'show' : 'hide';
};
$('[data-end]').onclick = () => {
  store(K); store('edge_outbox'); // nothing of the preview is sent later
  const u = new URL(location.href);
  u.searchParams.delete(K);
  location.replace(u.href);
};

const describe = g => {
  if (g.refused) return null;
  const left = Math.max(0, Math.round((g.expires * 1000 - Date.now()) / 60000));
  const until = new Date(g.expires * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  let text = `campaign ${g.campaign}, variant ${g.variant || 'the first'}`;
  if (g.step != null) text += `, step ${g.step + 1}`;
  return `${text}; this link works until ${until} (${left} min). Nothing this tab does is stored or counted.`;
};
const grant = g => {
  const p = $('[data-grant]');
  if (!g) return;
  if (g.refused) {
    refuse(g.refused);
    return;
  }
  p.className = 'grant';
  p.textContent = describe(g);
};
const refuse = why => {
  store(K); // the next page is an ordinary visit; this one stores and shows nothing
  const p = $('[data-grant]');
  p.className = 'grant refused';
  p.textContent = `preview refused: ${why}. This page stores and shows nothing; reload without edge_preview to browse normally.`;
  $('[data-trace]').replaceChildren();
  $('[data-shown]').replaceChildren(el('li', 'nothing'));
};
const decisions = (items, m) => {
  const info = m.preview || {};
  if (info.refused) return refuse(info.refused);
  const shown = items.map(it => el('li',
    `${it.campaign} in ${it.placement} (variant ${it.variant}${it.step ? `, step ${it.step + 1}` : ''})${it.holdout ? ': holdout, nothing shown' : ''}`,
    'shown' + (it.campaign == info.campaign ? ' forced' : '')));
  $('[data-shown]').replaceChildren(...(shown.length ? shown : [el('li', 'nothing')]));
  $('[data-trace]').replaceChildren(...(info.trace || []).map(line =>
    el('li', line, line.startsWith('preview:') ? 'forced' : '')));
};

w.edgePreview = { root };
edge('on', 'welcome', m => grant(m.preview));
edge('on', 'decisions', decisions);
edge('on', 'error', m => m.code == 'preview_refused' && refuse(m.message));
const mount = () => d.body.append(host);
d.body ? mount() : d.addEventListener('DOMContentLoaded', mount);
})(window, document);
