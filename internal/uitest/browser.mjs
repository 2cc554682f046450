// What check.mjs and chain.mjs share: Debian's headless Chromium through playwright-core
// (no browser download), and how a check fails.
import { chromium } from "playwright-core";

export const fail = (msg) => { console.error("uitest: " + msg); process.exit(1); };

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}
