// Official TypeScript SDK client (@modelcontextprotocol/sdk 1.32.2) for the
// cross-client comparison. The SDK is the one scripts/peers.sh installs in
// tests/peers/node_modules; it is resolved from there, so this file runs
// from anywhere: node benches/clients/ts_client.mjs <mode> URL N
//
// calls   URL N : connect, 20 warm-up calls, N sequential tools/call "echo";
//                 prints the loop's wall time and the process CPU time
//                 (user+sys, process.cpuUsage) spent in it, and the whole
//                 process's CPU time at the end.
// recover URL N : N times: print EXPIRE and wait for a line on stdin (the
//                 driver restarts the server meanwhile: every session is
//                 gone), call, and when the call fails do what a user of this
//                 SDK has to write (new transport, new Client, connect, call
//                 again); times that from the error to the result, next to
//                 the median of 100 plain calls. (Idle expiry cannot be used:
//                 this client holds a GET event stream open, which keeps the
//                 Python server's session from ever going idle.)
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';

const t0 = performance.now();
const require = createRequire(new URL('../../tests/peers/package.json', import.meta.url));
const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js');
const { StdioClientTransport } = require('@modelcontextprotocol/sdk/client/stdio.js');

const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const [mode, url, nArg] = process.argv.slice(2);
const n = Number(nArg);

async function connect() {
  const client = new Client({ name: 'bench', version: '1.0.0' });
  // `stdio:COMMAND ARGS` (split on spaces: the bench's paths have none)
  // runs the server as a child over stdio.
  const transport = url.startsWith('stdio:')
    ? (([command, ...args]) => new StdioClientTransport({ command, args }))(url.slice(6).trim().split(/\s+/))
    : new StreamableHTTPClientTransport(new URL(url));
  await client.connect(transport);
  return client;
}
const echo = async (client) => {
  const r = await client.callTool({ name: 'echo', arguments: { text: 'hi' } });
  if (r.content[0].text !== 'hi') throw new Error(`unexpected result ${JSON.stringify(r)}`);
};
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

let out;
if (mode === 'calls') {
  const client = await connect();
  for (let i = 0; i < 20; i++) await echo(client);
  const w0 = performance.now(); const c0 = cpu();
  for (let i = 0; i < n; i++) await echo(client);
  const w1 = performance.now(); const c1 = cpu();
  await client.close();
  out = { client: 'typescript', calls: n, wall_s: (w1 - w0) / 1e3, cpu_s: c1 - c0 };
} else if (mode === 'recover') {
  let client = await connect();
  const plain = [];
  for (let i = 0; i < 100; i++) {
    const s = performance.now(); await echo(client); plain.push((performance.now() - s) / 1e3);
  }
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const recover = [];
  for (let i = 0; i < n; i++) {
    // The driver restarts the server (every session gone), then says GO.
    console.log('EXPIRE');
    await lines.next();
    let failedAt;
    try {
      await echo(client);
    } catch (e) {
      failedAt = performance.now();
    }
    if (failedAt === undefined) throw new Error('the call succeeded: the session did not expire');
    // What a user of the SDK writes: a fresh transport and client, then the call again.
    client.close().catch(() => {});
    client = await connect();
    await echo(client);
    recover.push((performance.now() - failedAt) / 1e3);
  }
  await client.close();
  out = { client: 'typescript', plain_median_s: median(plain), recover_s: recover };
} else {
  throw new Error(`unknown mode ${mode}`);
}
out.process_cpu_s = cpu();
out.process_wall_s = (performance.now() - t0) / 1e3;
console.log(JSON.stringify(out));
process.exit(0);
