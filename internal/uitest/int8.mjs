// Checks the dashboard's INT8 badge in a real headless Chromium: the deployment on STREAM
// of an image made by `diplip fn quantize` shows "INT8 · F1 x.xxx", and the badge's title
// says which FP32 image it came from. Used by cmd/diplip's TestFnQuantizeOnTheStreamsOwnFrames.
//
// usage: node int8.mjs URL STREAM FROM-DIGEST SCREENSHOT.png
import { fail, launch } from "./browser.mjs";

const [url, stream, from, shot] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);
  const handle = await page.waitForFunction((s) => {
    for (const tr of document.querySelectorAll("#deployments tbody tr")) {
      const b = tr.querySelector(".int8");
      if (b && tr.textContent.includes(s)) return { text: b.textContent, title: b.title };
    }
    return null;
  }, stream, { timeout: 30_000 }).catch(() => fail(`no INT8 badge on ${stream}'s deployment within 30 s`));
  const badge = await handle.jsonValue();
  if (!/^INT8 · F1 [01]\.\d{3}$/.test(badge.text)) fail(`badge text ${JSON.stringify(badge.text)}, want "INT8 · F1 0.xxx"`);
  if (!badge.title.includes("INT8 from " + from)) fail(`badge title ${JSON.stringify(badge.title)} does not name ${from}`);
  await page.screenshot({ path: shot, fullPage: true });
  if (errors.length) fail("page errors: " + errors.join("; "));
  console.log(`uitest: ok: ${stream}: ${badge.text}; screenshot ${shot}`);
} finally {
  await browser.close();
}
