// Runs one command inside Anthropic's sandbox runtime (srt) and reports what the sandbox blocked.
//
// Why not the `srt` CLI alone: the CLI keeps the violations it observes (writes bubblewrap
// refused, connections its proxy denied) to itself, and exits 0 when the command dies of
// SIGTERM. This runner is the CLI's Linux/macOS path through the same library
// (SandboxManager.initialize → wrapWithSandbox → spawn), with the violation monitor on; when
// the command ends it writes the violations as JSON to <report> — from the host side, where
// nothing inside the sandbox can forge or erase it — and exits with the command's code, or
// 128+signal when a signal ended it (never 0).
//
// usage: node srt_run.mjs <srt dist folder> <settings.json> <report.json> -- <argv...>
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';

const [lib, settingsPath, reportPath, sep, ...argv] = process.argv.slice(2);
if (!lib || !settingsPath || !reportPath || sep !== '--' || argv.length === 0) {
  console.error('srt_run: usage: srt_run.mjs <srt dist> <settings.json> <report.json> -- <argv...>');
  process.exit(2);
}
const { SandboxManager } = await import(`${lib}/index.js`);
const { quote } = await import(`${lib}/utils/shell-quote.js`);
const { loadConfig } = await import(`${lib}/utils/config-loader.js`);

const loaded = loadConfig(settingsPath);
if (!loaded || loaded.kind !== 'ok') {
  // An empty, unreadable or invalid settings file is an error, never srt's defaults.
  console.error(`srt_run: settings ${settingsPath}: ${loaded?.reason ?? loaded?.kind ?? 'invalid'}`);
  process.exit(1);
}

function report(extra) {
  let violations = [];
  try {
    violations = SandboxManager.getSandboxViolationStore().getViolations().map(v => String(v.line));
  } catch { /* no store: nothing observed */ }
  const tmp = `${reportPath}.part`;
  fs.writeFileSync(tmp, JSON.stringify({ violations, ...extra }));
  fs.renameSync(tmp, reportPath);
}

let child = null;
const pending = [];
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => { if (child) child.kill(sig); else pending.push(sig); });
}
try {
  await SandboxManager.initialize(loaded.config, undefined, true);
  const wrapped = await SandboxManager.wrapWithSandbox(quote(argv));
  if (pending.length) process.exit(130);
  child = spawn(wrapped, { shell: true, stdio: 'inherit' });
} catch (err) {
  console.error(`srt_run: ${err instanceof Error ? err.message : String(err)}`);
  report({ error: String(err) });
  process.exit(1);
}
child.on('error', err => {
  console.error(`srt_run: cannot start the command: ${err.message}`);
  report({ error: err.message });
  process.exit(1);
});
child.on('exit', (code, signal) => {
  // The seccomp observer's last events arrive just after the command ends.
  setTimeout(() => {
    const status = code ?? 128 + (os.constants.signals[signal] ?? 0);
    try { report({ exit: status, signal }); } catch (err) { console.error(`srt_run: report: ${err}`); }
    try { SandboxManager.cleanupAfterCommand(); } catch { /* best effort */ }
    process.exit(signal && status === 0 ? 1 : status);
  }, 150);
});
