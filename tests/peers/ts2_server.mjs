#!/usr/bin/env node
// Test peer MCP server on the official TypeScript SDK v2
// (@modelcontextprotocol/server 2.4.0 + @modelcontextprotocol/node 2.1.2).
//
// Serves, from one endpoint POST http://127.0.0.1:<port>/mcp:
//   - the 2026-07-28 stateless wire (per-request _meta envelope, server/discover,
//     multi-round-trip input_required results), via createMcpHandler;
//   - the 2025-era handshake wire (initialize ...), via the SDK's built-in
//     stateless legacy fallback (createMcpHandler's default legacy: 'stateless').
//
// CLI: --port N (0 = any free port)  --state DIR (counter files)
//      --modern-only: the 2026-07-28 wire only (legacy: 'reject': a
//      handshake request gets -32022 naming 2026-07-28)
// Prints exactly "READY <port>" on stdout once listening.

import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import {
    McpServer,
    createMcpHandler,
    createRequestStateCodec,
    fromJsonSchema,
    inputRequired,
    inputResponse,
    isLegacyRequest
} from '@modelcontextprotocol/server';
import { toNodeHandler } from '@modelcontextprotocol/node';

// ---------- CLI ----------
function parseArgs(argv) {
    const out = { port: 0, state: null, modernOnly: false };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const next = () => {
            if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`);
            return argv[++i];
        };
        if (a === '--port') out.port = Number.parseInt(next(), 10);
        else if (a.startsWith('--port=')) out.port = Number.parseInt(a.slice(7), 10);
        else if (a === '--state') out.state = next();
        else if (a === '--modern-only') out.modernOnly = true;
        else if (a.startsWith('--state=')) out.state = a.slice(8);
        else throw new Error(`unknown argument: ${a}`);
    }
    if (!Number.isInteger(out.port) || out.port < 0 || out.port > 65535) throw new Error('bad --port');
    if (!out.state) throw new Error('--state DIR is required');
    return out;
}

let args;
try {
    args = parseArgs(process.argv.slice(2));
} catch (e) {
    process.stderr.write(`ts2_server: ${e.message}\nusage: ts2_server.mjs --port N --state DIR\n`);
    process.exit(2);
}
mkdirSync(args.state, { recursive: true });

// ---------- file counters (read, +1, write tmp + rename; serialized in-process) ----------
const locks = new Map();
function bumpCounter(name) {
    const prev = locks.get(name) ?? Promise.resolve();
    const next = prev.then(() => {
        const file = join(args.state, name);
        let n = 0;
        try {
            n = Number.parseInt(readFileSync(file, 'utf8').trim(), 10) || 0;
        } catch (e) {
            if (e.code !== 'ENOENT') throw e;
        }
        n += 1;
        const tmp = `${file}.tmp.${process.pid}.${randomBytes(4).toString('hex')}`;
        writeFileSync(tmp, `${n}\n`);
        renameSync(tmp, file);
        return n;
    });
    locks.set(name, next.catch(() => {}));
    return next;
}

const sleep = ms => new Promise(r => setTimeout(r, ms));

// ---------- multi-round-trip requestState (HMAC-signed by the SDK codec) ----------
// One process serves every round, so a per-process random key is enough.
const stateCodec = createRequestStateCodec({
    key: randomBytes(32),
    ttlSeconds: 600,
    bind: ctx => `${ctx.mcpReq.method}`
});

const CONFIRM_KEY = 'confirm';
const confirmSchema = {
    type: 'object',
    properties: { ok: { type: 'boolean', description: 'Proceed with the deploy?' } },
    required: ['ok']
};

// ---------- server factory (one fresh instance per HTTP request) ----------
function buildServer() {
    const server = new McpServer(
        { name: 'ts2-peer', version: '1.0.0' },
        {
            capabilities: { tools: {} },
            requestState: { verify: stateCodec.verify }
        }
    );

    server.registerTool(
        'echo',
        {
            description: 'Echo the given text back.',
            inputSchema: fromJsonSchema({
                type: 'object',
                properties: { text: { type: 'string' } },
                required: ['text']
            }),
            annotations: { readOnlyHint: true }
        },
        async ({ text }) => ({ content: [{ type: 'text', text }] })
    );

    server.registerTool(
        'counter_increment',
        {
            description: 'Increment the on-disk counter, wait delay_ms, return the new value.',
            inputSchema: fromJsonSchema({
                type: 'object',
                properties: { delay_ms: { type: 'integer', minimum: 0 } }
            })
        },
        async ({ delay_ms }, ctx) => {
            const n = await bumpCounter('counter');
            if (delay_ms && delay_ms > 0) await sleep(delay_ms);
            return { content: [{ type: 'text', text: String(n) }] };
        }
    );

    server.registerTool(
        'deploy',
        {
            description: 'Deploy to an environment after asking the user for confirmation.',
            inputSchema: fromJsonSchema({
                type: 'object',
                properties: { env: { type: 'string', 'x-mcp-header': 'Env' } },
                required: ['env']
            })
        },
        async ({ env }, ctx) => {
            const ask = async () =>
                inputRequired({
                    inputRequests: {
                        [CONFIRM_KEY]: inputRequired.elicit({
                            message: `Deploy to ${env}?`,
                            requestedSchema: confirmSchema
                        })
                    },
                    requestState: await stateCodec.mint({ tool: 'deploy', env }, ctx)
                });

            const answer = inputResponse(ctx.mcpReq.inputResponses, CONFIRM_KEY);
            if (answer.kind === 'missing') return ask();
            // The retry must echo state minted for this same env.
            const st = ctx.mcpReq.requestState();
            if (!st || st.tool !== 'deploy' || st.env !== env) return ask();
            if (answer.kind !== 'elicit') return ask();

            if (answer.action === 'accept' && answer.content?.ok === true) {
                const n = await bumpCounter('deploys');
                return { content: [{ type: 'text', text: `deployed to ${env}: true (#${n})` }] };
            }
            return {
                isError: true,
                content: [{ type: 'text', text: `deploy to ${env} not confirmed (${answer.action})` }]
            };
        }
    );

    return server;
}

const mcp = createMcpHandler(() => buildServer(), {
    legacy: args.modernOnly ? 'reject' : 'stateless',
    onerror: err => process.stderr.write(`ts2_server: ${err?.message ?? err}\n`)
});

// Count `initialize` requests served on the 2025 handshake wire: the request must
// classify legacy (the SDK's own predicate) and the SDK must answer it with 200.
const counted = {
    fetch: async (request, options) => {
        let isInit = false;
        if (request.method === 'POST') {
            try {
                const body = await request.clone().json();
                const msgs = Array.isArray(body) ? body : [body];
                if (msgs.some(m => m && m.method === 'initialize' && m.id !== undefined)) {
                    isInit = await isLegacyRequest(request, body);
                }
            } catch {
                /* not JSON: the SDK answers it */
            }
        }
        const response = await mcp.fetch(request, options);
        if (isInit && response.status === 200) await bumpCounter('initialize');
        return response;
    }
};
const nodeHandler = toNodeHandler(counted, {
    onerror: err => process.stderr.write(`ts2_server: ${err?.message ?? err}\n`)
});

const httpServer = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/mcp') {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found\n');
        return;
    }
    nodeHandler(req, res).catch(err => {
        process.stderr.write(`ts2_server: ${err?.stack ?? err}\n`);
        if (!res.headersSent) res.writeHead(500);
        res.end();
    });
});

httpServer.listen(args.port, '127.0.0.1', () => {
    process.stdout.write(`READY ${httpServer.address().port}\n`);
});

const shutdown = () => {
    httpServer.close();
    mcp.close().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
