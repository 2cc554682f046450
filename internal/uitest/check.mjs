// Drives diplip's dashboard in a real headless Chromium (Debian's, through playwright-core;
// no browser download) and checks what a person would look at: the runner goes from idle to
// active, the live view draws boxes that match the latest result, and the page saves a
// screenshot. Used by cmd/diplip's TestDashboard.
//
// usage: node check.mjs URL SCREENSHOT.png
import { fail, launch } from "./browser.mjs";

const [url, shot] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);

  // The demo's runner starts idle (or not at all) and becomes active on the first frames.
  const states = new Set();
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    for (const s of await page.$$eval("#runners tbody tr[data-state]", (rows) => rows.map((r) => r.dataset.state))) states.add(s);
    if (states.has("active")) break;
    await page.waitForTimeout(250);
  }
  if (!states.has("active")) fail("no runner became active; saw " + [...states].join(","));

  // The live view of the demo camera: boxes drawn on the frame, the same as the result's.
  await page.waitForFunction(() => JSON.parse(document.querySelector("#overlay").dataset.boxes || "[]").length > 0, null, { timeout: 60_000 });
  // One evaluation reads the boxes and the pixels together: the view redraws on every
  // result, so two reads could see two different frames.
  const drawn = await page.$eval("#overlay", (c) => {
    const boxes = JSON.parse(c.dataset.boxes);
    const b = boxes[0];
    const px = c.getContext("2d").getImageData(Math.round(b[1]), Math.round(b[2]), 3, 3).data;
    return { boxes, id: c.dataset.resultId, w: c.width, h: c.height, painted: px.some((v, i) => i % 4 === 3 && v > 0) };
  });
  const [stream] = drawn.id.split("/");
  const res = await page.evaluate(async (s) => {
    const r = await fetch(`/v1/streams/${s}/results?last=200`);
    return (await r.text()).trim().split("\n").map((l) => JSON.parse(l));
  }, stream);
  const result = res.find((r) => r.id === drawn.id);
  if (!result) fail("the drawn result " + drawn.id + " is not among the stream's results");
  const want = result.detections.map((d) => [d.label, d.box.x1, d.box.y1, d.box.x2, d.box.y2]);
  if (JSON.stringify(want) !== JSON.stringify(drawn.boxes)) fail("drawn boxes differ from the result's: " + JSON.stringify(drawn.boxes));
  if (drawn.w !== result.width || drawn.h !== result.height) fail(`overlay ${drawn.w}x${drawn.h} vs frame ${result.width}x${result.height}`);

  // Something is painted where the first box is (the overlay is not blank there).
  if (!drawn.painted) fail("the overlay has no pixels at the first box's corner");

  await page.screenshot({ path: shot, fullPage: true });
  if (errors.length) fail("page errors: " + errors.join("; "));
  console.log(`uitest: ok: runner states ${[...states].join(",")}; ${drawn.boxes.length} boxes drawn for ${drawn.id}; screenshot ${shot}`);
} finally {
  await browser.close();
}
