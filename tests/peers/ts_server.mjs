// Test peer: an MCP server on the official TypeScript SDK
// (@modelcontextprotocol/sdk 1.32.2) with express, one transport per session.
//
// Started by the Rust integration tests. Binds 127.0.0.1 (port 0 = any free
// port), prints `READY <port>` once listening, and keeps its counters in
// files under --state so they survive a kill + restart: `initialize`
// (initialize requests handled) and `counter` (executions of the
// side-effecting tool).
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync, renameSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import express from 'express';
import { z } from 'zod';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { completable } from '@modelcontextprotocol/sdk/server/completable.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { isInitializeRequest, ElicitResultSchema } from '@modelcontextprotocol/sdk/types.js';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    state: { type: 'string' },
    mode: { type: 'string', default: 'sse' }, // sse | json | stateless
    'count-posts': { type: 'boolean', default: false }, // POSTs to /mcp in the `posts` file
    stdio: { type: 'boolean', default: false }, // stdin/stdout; counts starts in `starts`, pid in `pid`
  },
});
if (!args.state) throw new Error('--state is required');
mkdirSync(args.state, { recursive: true });

const read = (name) => {
  try { return Number(readFileSync(join(args.state, name), 'utf8')) || 0; } catch { return 0; }
};
const bump = (name) => {
  const n = read(name) + 1;
  const path = join(args.state, name);
  writeFileSync(path + '.tmp', String(n));
  renameSync(path + '.tmp', path);
  return n;
};
const text = (s) => ({ content: [{ type: 'text', text: String(s) }] });

function build() {
  const server = new McpServer({ name: 'ts-peer', version: '1.0.0' });
  server.registerTool('echo', {
    description: 'Returns its argument.',
    inputSchema: { text: z.string() },
    annotations: { readOnlyHint: true },
  }, async ({ text: t }) => text(t));
  server.registerTool('add', {
    description: 'Adds two integers.',
    inputSchema: { a: z.number().int(), b: z.number().int() },
    annotations: { readOnlyHint: true },
  }, async ({ a, b }) => text(a + b));
  server.registerTool('counter_increment', {
    description: 'Adds one to the persistent counter, then waits delay_ms before answering.',
    inputSchema: { delay_ms: z.number().int().optional() },
    annotations: { readOnlyHint: false, idempotentHint: false },
  }, async ({ delay_ms }) => {
    const n = bump('counter');
    if (delay_ms) await new Promise((r) => setTimeout(r, delay_ms));
    return text(n);
  });
  server.registerTool('add_structured', {
    description: 'Adds two numbers; the sum also as structured content.',
    inputSchema: { a: z.number(), b: z.number() },
    outputSchema: { sum: z.number() },
    annotations: { readOnlyHint: true },
  }, async ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }], structuredContent: { sum: a + b } }));
  server.registerTool('confirm', {
    description: 'Asks the client (elicitation, on the call\'s own stream) and reports its answer.',
    inputSchema: { question: z.string() },
  }, async ({ question }, extra) => {
    const answer = await extra.sendRequest({
      method: 'elicitation/create',
      params: { message: question, requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } } } },
    }, ElicitResultSchema);
    return text(`${answer.action}:${answer.content?.ok}`);
  });
  server.registerTool('confirm_on_session', {
    description: 'Asks the client through the session (elicitation with no related request: the SDK sends it on the GET stream, and drops it when that stream is not open), then reports the answer.',
    inputSchema: { question: z.string() },
  }, async ({ question }) => {
    const answer = await server.server.elicitInput({
      message: question,
      requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } } },
    });
    return text(`${answer.action}:${answer.content?.ok}`);
  });
  server.registerTool('gallery', {
    description: 'One block of every kind: text, image, audio, a resource link and an embedded resource.',
    annotations: { readOnlyHint: true },
  }, async () => ({ content: [
    { type: 'text', text: 'a picture' },
    { type: 'image', data: 'iVBORw0KGgo=', mimeType: 'image/png' },
    { type: 'audio', data: 'UklGRg==', mimeType: 'audio/wav' },
    { type: 'resource_link', uri: 'counter://total', name: 'counter' },
    { type: 'resource', resource: { uri: 'greeting://Ada', text: 'Hello, Ada!' } },
  ] }));
  server.registerTool('counter_get', {
    description: 'The persistent counter.',
    annotations: { readOnlyHint: true },
  }, async () => text(read('counter')));
  server.registerTool('slow', {
    description: 'Reports `steps` progress notifications, 20 ms apart.',
    inputSchema: { steps: z.number().int() },
    annotations: { readOnlyHint: true },
  }, async ({ steps }, extra) => {
    const token = extra._meta?.progressToken;
    for (let i = 0; i < steps; i++) {
      if (token !== undefined) {
        await extra.sendNotification({
          method: 'notifications/progress',
          params: { progressToken: token, progress: i + 1, total: steps, message: `step ${i + 1}` },
        });
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return text(`done after ${steps} steps`);
  });
  server.registerResource('counter', 'counter://total', { description: 'The persistent counter.' },
    async (uri) => ({ contents: [{ uri: uri.href, text: String(read('counter')) }] }));
  const NAMES = ['Ada', 'Alan', 'Barbara', 'Grace'];
  const names = (value) => NAMES.filter((n) => n.toLowerCase().startsWith((value ?? '').toLowerCase()));
  server.registerPrompt('greet', {
    description: 'A greeting prompt.',
    argsSchema: { name: completable(z.string(), names) },
  }, ({ name }) => ({ messages: [{ role: 'user', content: { type: 'text', text: `Say hello to ${name}.` } }] }));
  server.registerResource('greeting',
    new ResourceTemplate('greeting://{name}', { list: undefined, complete: { name: names } }),
    { description: 'A greeting for anyone: a resource template.' },
    async (uri, { name }) => ({ contents: [{ uri: uri.href, text: `Hello, ${name}!` }] }));
  return server;
}

if (args.stdio) {
  bump('starts');
  writeFileSync(join(args.state, 'pid'), String(process.pid));
  await build().connect(new StdioServerTransport());
}

const json = args.mode === 'json';
const app = express();
app.use(express.json({ limit: '4mb' }));
const transports = new Map();

app.post('/mcp', async (req, res) => {
  const body = req.body;
  const items = Array.isArray(body) ? body : [body];
  if (items.some((m) => m && m.method === 'initialize')) bump('initialize');
  if (args['count-posts']) bump('posts');
  if (args.mode === 'stateless') {
    const server = build();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: false });
    res.on('close', () => { transport.close(); server.close(); });
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
    return;
  }
  const sid = req.headers['mcp-session-id'];
  let transport = sid ? transports.get(sid) : undefined;
  if (!transport) {
    if (sid) {
      res.status(404).json({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });
      return;
    }
    if (!isInitializeRequest(body)) {
      res.status(400).json({ jsonrpc: '2.0', error: { code: -32000, message: 'Bad Request: No valid session ID provided' }, id: null });
      return;
    }
    transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableJsonResponse: json,
      onsessioninitialized: (id) => transports.set(id, transport),
    });
    transport.onclose = () => { if (transport.sessionId) transports.delete(transport.sessionId); };
    await build().connect(transport);
  }
  await transport.handleRequest(req, res, body);
});

const sessionRequest = async (req, res) => {
  const sid = req.headers['mcp-session-id'];
  const transport = sid ? transports.get(sid) : undefined;
  if (!transport) {
    res.status(sid ? 404 : 400).json({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });
    return;
  }
  await transport.handleRequest(req, res);
};
app.get('/stats', (req, res) => {
  res.json({ sessions: transports.size, initialize: read('initialize'), counter: read('counter') });
});
app.get('/mcp', sessionRequest);
app.delete('/mcp', sessionRequest);

if (!args.stdio) {
  const listener = app.listen(Number(args.port), '127.0.0.1', () => {
    console.log(`READY ${listener.address().port}`);
  });
}
