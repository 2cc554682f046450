// Drives the dashboard's chain surfaces in Debian's headless Chromium (through
// playwright-core), as a person would: the deploy form has the second stage's fields, its
// "after" offers the functions deployed on the stream typed in, deploying with it makes a
// second stage that the deployments list shows as FIRST → FUNCTION, and the second stages
// panel counts the crops of its enriched results while frames come. Used by cmd/diplip's
// TestDashboardChain, which pushes the frames and checks the deployment through the API.
//
// usage: node chain.mjs URL STREAM FIRST REF SCREENSHOT.png
import { fail, launch } from "./browser.mjs";

const [url, stream, first, ref, shot] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);

  const fields = await page.$$eval("#deploy-form [name]", (els) => els.map((e) => e.tagName.toLowerCase() + ":" + e.name));
  for (const want of ["input:ref", "input:stream", "input:max", "select:after", "input:classes", "input:min_size", "input:max_per_frame"]) {
    if (!fields.includes(want)) fail(`the deploy form has no ${want}; it has ${fields.join(", ")}`);
  }

  // "after" offers the primaries of the stream typed in (the list refreshes every 2 s).
  await page.fill("#deploy-form [name=stream]", stream);
  await page.waitForFunction((f) => [...document.querySelectorAll("#deploy-form [name=after] option")].some((o) => o.value === f),
    first, { timeout: 30_000 }).catch(() => fail(`the form's "after" never offered ${first} on ${stream}`));
  const offered = await page.$$eval("#deploy-form [name=after] option", (os) => os.map((o) => o.value));

  await page.fill("#deploy-form [name=ref]", ref);
  await page.selectOption("#deploy-form [name=after]", first);
  await page.fill("#deploy-form [name=classes]", "person");
  await page.fill("#deploy-form [name=min_size]", "60");
  page.on("dialog", (d) => { errors.push("alert: " + d.message()); d.dismiss(); });
  await page.click("#deploy-form button");

  const fn = ref.split("/").pop().split(":")[0];
  const chain = `${first} → ${fn}`;
  await page.waitForFunction((c) => document.querySelector("#deployments tbody").textContent.includes(c), chain, { timeout: 30_000 })
    .catch(() => fail(`the deployments list never showed ${chain}; errors: ${errors.join("; ")}`));
  const key = `${fn}.${stream}.after.${first}`;
  const row = `#chains tbody tr[data-chain="${key}"]`;
  await page.waitForSelector(row, { timeout: 30_000 }).catch(() => fail(`no second stage panel row for ${key}`));

  // The panel counts crops from the enriched results as they come (the test pushes frames).
  await page.waitForFunction((sel) => {
    const r = document.querySelector(sel);
    return r && parseFloat(r.querySelector(".crops-rate").textContent) > 0 && parseFloat(r.querySelector(".crops-per-frame").textContent) > 0;
  }, row, { timeout: 240_000 }).catch(() => fail(`the second stage panel never counted a crop for ${key}`));
  const panel = await page.$eval(row, (r) => ({
    cells: [...r.querySelectorAll("td")].map((td) => td.textContent),
    lag: r.querySelector(".lag").textContent,
    rate: r.querySelector(".crops-rate").textContent,
    perFrame: r.querySelector(".crops-per-frame").textContent,
  }));
  if (panel.lag === "") fail(`the panel shows no stage-2 lag for ${key}: ${panel.cells.join(" | ")}`);

  await page.screenshot({ path: shot, fullPage: true });
  if (errors.length) fail("page errors: " + errors.join("; "));
  console.log(`uitest: ok: after offered [${offered.join(",")}]; deployed ${chain}; panel: ${panel.cells.join(" | ")}`);
  console.log(`uitest: crops/s ${panel.rate}, crops per frame ${panel.perFrame}, stage-2 lag ${panel.lag}; screenshot ${shot}`);
} finally {
  await browser.close();
}
