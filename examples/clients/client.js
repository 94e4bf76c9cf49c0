#!/usr/bin/env node
// A scopevault client using only Node's standard library (docs/protocol.md).
//
//   node client.js [--socket PATH] health | tasks | fetch TASK [CREDENTIAL] | redeem TICKET
//
// Prints the response as JSON. Exit status: 0 ok, 5 refused by the daemon, 2 usage or I/O.
'use strict';
const net = require('net');
const os = require('os');
const path = require('path');

const MAX_RESPONSE = 16 * 1024 * 1024;

function defaultSocket() {
  if (process.env.SCOPEVAULT_SOCKET) return process.env.SCOPEVAULT_SOCKET;
  const runtime = process.env.XDG_RUNTIME_DIR;
  if (runtime && os.userInfo().uid !== 0) return path.join(runtime, 'scopevault', 'scopevault.sock');
  return '/run/scopevault/scopevault.sock';
}

class ScopevaultError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

// One connection; requests are answered in order, one JSON line each.
class ScopevaultClient {
  constructor(socketPath) {
    this.socketPath = socketPath || defaultSocket();
    this.buf = Buffer.alloc(0);
    this.waiting = [];
  }

  connect() {
    return new Promise((resolve, reject) => {
      this.sock = net.createConnection(this.socketPath, resolve);
      this.sock.once('error', reject);
      this.sock.on('data', (chunk) => {
        this.buf = Buffer.concat([this.buf, chunk]);
        if (this.buf.length > MAX_RESPONSE) this.sock.destroy(new Error('response too large'));
        let nl;
        while ((nl = this.buf.indexOf(10)) >= 0 && this.waiting.length) {
          const line = this.buf.subarray(0, nl).toString('utf8');
          this.buf = this.buf.subarray(nl + 1);
          this.waiting.shift().resolve(line);
        }
      });
      this.sock.on('close', () => {
        for (const w of this.waiting.splice(0)) w.reject(new Error('the daemon closed the connection'));
      });
    });
  }

  async call(op, fields = {}) {
    const req = { v: 1, op };
    for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null) req[k] = v;
    const line = await new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.sock.write(JSON.stringify(req) + '\n');
    });
    const res = JSON.parse(line);
    if (!res.ok) throw new ScopevaultError(res.error.code, res.error.message);
    return res;
  }

  health() { return this.call('health'); }
  async tasks() { return (await this.call('tasks')).tasks; }
  fetch(task, credential) { return this.call('fetch', { task, credential }); }
  redeem(ticket, credential) { return this.call('fetch', { ticket, credential }); }
  close() { this.sock.end(); }
}

async function main(argv) {
  let socketPath;
  if (argv[0] === '--socket') { socketPath = argv[1]; argv = argv.slice(2); }
  const [cmd, a, b] = argv;
  const client = new ScopevaultClient(socketPath);
  try {
    await client.connect();
    let out;
    if (cmd === 'health') out = await client.health();
    else if (cmd === 'tasks') out = await client.tasks();
    else if (cmd === 'fetch' && a) out = await client.fetch(a, b);
    else if (cmd === 'redeem' && a) out = await client.redeem(a, b);
    else { console.error('usage: client.js [--socket PATH] health | tasks | fetch TASK [CREDENTIAL] | redeem TICKET'); return 2; }
    console.log(JSON.stringify(out, null, 2));
    return 0;
  } catch (e) {
    console.error(e instanceof ScopevaultError ? `scopevault refused: ${e.message}` : `cannot talk to the scopevault daemon: ${e.message}`);
    return e instanceof ScopevaultError ? 5 : 2;
  } finally {
    if (client.sock) client.close();
  }
}

module.exports = { ScopevaultClient, ScopevaultError };
if (require.main === module) main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
