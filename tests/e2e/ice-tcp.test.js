// Calls through networks that drop UDP: netns/ice-tcp.mjs runs in a network namespace
// of its own (`unshare -n`, only a loopback of its own), so that the nftables rules it
// sets touch nothing else on the machine; this file runs it and reports what it said.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

test('ICE-TCP in a namespace whose UDP is dropped (netns/ice-tcp.mjs)', () => {
  // A test runner of its own in there (not a child of this one's).
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  const r = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && exec "$0" --test netns/ice-tcp.mjs', process.execPath], {
    encoding: 'utf8', timeout: 180000, env,
  });
  const said = `${r.stdout ?? ''}\n${r.stderr ?? ''}`;
  assert.equal(r.status, 0, `the namespace's tests failed:\n${said}`);
  assert.match(r.stdout, /# pass 5\b/, said);
});
