// Drives the web console in real headless Chromium over the DevTools protocol (Node 20
// with --experimental-websocket; no npm packages):
//   node --experimental-websocket console_test.mjs URL TOKEN SCREENSHOT.png PROFILE_DIR
// Enters the token, submits an invalid task (expects the API's error inline at the field),
// creates a valid task through the form, waits for it to be listed as running, pauses it,
// waits for "paused", checks the topology view, and saves a screenshot. Exits non-zero
// with the reason on any failure.

import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";

const [url, token, screenshot, profile] = process.argv.slice(2);
const fail = (message) => { console.error("web console test: " + message); process.exit(1); };
const deadline = (ms, what) => setTimeout(() => fail("timed out: " + what), ms);
const overall = deadline(90_000, "the whole test");

const chromium = spawn("chromium", [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-dev-shm-usage", "--no-first-run", "--window-size=1280,1100",
  "--user-data-dir=" + profile, "--remote-debugging-port=0", "about:blank",
], { stdio: ["ignore", "ignore", "pipe"] });
chromium.on("exit", (code) => { if (!done) fail("chromium exited early with " + code); });
let done = false;

const endpoint = await new Promise((resolve) => {
  let seen = "";
  chromium.stderr.on("data", (chunk) => {
    seen += chunk;
    const m = seen.match(/DevTools listening on (ws:\/\/\S+)/);
    if (m) resolve(m[1]);
  });
});

const ws = new WebSocket(endpoint);
await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
let nextId = 1;
const pending = new Map();
ws.onmessage = (event) => {
  const message = JSON.parse(event.data);
  if (message.id && pending.has(message.id)) {
    const { resolve, reject } = pending.get(message.id);
    pending.delete(message.id);
    message.error ? reject(new Error(JSON.stringify(message.error))) : resolve(message.result);
  }
};
const send = (method, params = {}, sessionId) => new Promise((resolve, reject) => {
  const id = nextId++;
  pending.set(id, { resolve, reject });
  ws.send(JSON.stringify({ id, method, params, sessionId }));
});

const { targetId } = await send("Target.createTarget", { url });
const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
const page = (method, params) => send(method, params, sessionId);
await page("Runtime.enable");
const evaluate = async (expression) => {
  const r = await page("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
  if (r.exceptionDetails) fail("script error: " + JSON.stringify(r.exceptionDetails));
  return r.result.value;
};
const until = async (what, expression, ms = 20_000) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await evaluate(expression)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  fail("waited " + ms + " ms for " + what + "; page says: " + await evaluate("document.getElementById('message').textContent"));
};

await until("the page to load", "document.readyState === 'complete' && !!document.getElementById('create')");
await evaluate(`(() => { const t = document.getElementById('token'); t.value = ${JSON.stringify(token)};
  t.dispatchEvent(new Event('change')); })()`);
await until("the region name", "document.getElementById('region').textContent === 'eu'");

const fill = (fields) => evaluate(`(() => { const f = document.getElementById('create');
  for (const [k, v] of Object.entries(${JSON.stringify(fields)})) f.elements[k].value = v;
  f.requestSubmit(); })()`);

// An invalid target: the API's message shows at the targets field.
await fill({ name: "web-task", sources: "eu", targets: "mars", topics: "orders" });
await until("the inline error at targets",
  "document.querySelector('.field-error[data-for=targets]').textContent.includes('unknown region')");
if (!await evaluate("document.querySelector('input[name=targets]').getAttribute('aria-invalid') === 'true'"))
  fail("the targets input is not marked invalid");

await fill({ name: "web-task", sources: "eu", targets: "us", topics: "orders" });
const state = "document.querySelector('tr[data-task=\"web-task\"] [data-role=state]')?.textContent";
await until("the task listed as running", `${state} === 'running'`);
await evaluate("document.querySelector('tr[data-task=\"web-task\"] button[data-action=pause]').click()");
await until("the task listed as paused", `${state} === 'paused'`);
await until("the link to us shown up",
  "[...document.querySelectorAll('#links tr')].some((r) => r.cells[0].textContent === 'us' && r.cells[1].textContent === 'up')");

// A DR task whose primary is us: eu's row offers "Fail over here"; a planned failover
// makes eu the primary at epoch 1.
await evaluate(`api("POST", "/api/v1/tasks", { name: "web-dr", sources: ["us"], targets: ["eu"],
  topics: "ledger", dr: { primary: "us" } }).then(() => refresh())`);
const flow = "document.querySelector('tr[data-task=\"web-dr\"] [data-role=flow]')?.textContent";
await until("the DR task listed with its primary", `(${flow} || '').includes('DR primary us, epoch 0')`);
await evaluate("window.confirm = () => true; document.querySelector('tr[data-task=\"web-dr\"] button[data-action=failover]').click()");
await until("eu shown as the primary", `(${flow} || '').includes('DR primary eu, epoch 1')`);

// The topology picture: both regions, this one marked, the link between them up; the
// charts of the last hour drawn with at least two samples of a task's replication.
await until("the topology picture",
  "!!document.querySelector('#topology-map circle.region.this[data-region=eu]') && " +
  "!!document.querySelector('#topology-map circle[data-region=us]') && " +
  "!!document.querySelector('#topology-map line[data-link=\"eu-us\"][data-state=up]')");
await until("the charts drawn with data",
  "['lag-records', 'lag-bytes', 'lag-seconds', 'throughput', 'rpo'].every((c) => !!document.querySelector('#charts svg[data-chart=' + c + ']')) && " +
  "[...document.querySelectorAll('#charts svg[data-chart=lag-records] polyline')].some((p) => Number(p.dataset.points) >= 2)");

// The topic browser lists web-orders' sub-log of eu with the offsets it holds.
await until("the topic browser",
  "[...document.querySelectorAll('#topics tr[data-topic=\"web-orders\"]')].some((r) => r.cells[2].textContent === 'eu' && r.cells[3].textContent === '0 – 5')");

// The message browser: find one of the messages the test produced into "web-orders" by
// its key, and see it listed with its body.
await evaluate(`(() => { const f = document.getElementById('messages');
  f.elements.topic.value = 'web-orders'; f.elements.key.value = 'web-key-3'; f.requestSubmit(); })()`);
await until("the message found by key",
  "[...document.querySelectorAll('#found tr')].some((r) => r.dataset.message === 'eu-0-3' && r.cells[5].textContent === 'web order 3')");
// Its trace: a timeline with a lane per region, the produce in eu and the replication
// to us drawn on it, and the steps listed.
await evaluate("document.querySelector('#found tr[data-message=\"eu-0-3\"] button[data-action=trace]').click()");
await until("the timeline with the produce in eu and the replication to us",
  "!!document.querySelector('#timeline circle[data-kind=produced][data-region=eu]') && " +
  "!!document.querySelector('#timeline circle[data-kind=replicated][data-region=us]') && " +
  "!!document.querySelector('#timeline line.hop') && " +
  "document.querySelectorAll('#trace-events tr').length >= 2");
await evaluate(`(() => { const f = document.getElementById('messages');
  f.elements.key.value = ''; f.elements.from.value = 'yesterday'; f.requestSubmit(); })()`);
await until("the bad time shown at its field",
  "document.querySelector('#messages .field-error[data-for=from]').textContent.includes('RFC 3339')");

const shot = await page("Page.captureScreenshot", { format: "png", captureBeyondViewport: true });
writeFileSync(screenshot, Buffer.from(shot.data, "base64"));
done = true;
clearTimeout(overall);
await send("Browser.close").catch(() => {});
chromium.kill();
console.log("web console test passed; screenshot at " + screenshot);
process.exit(0);
