// The SDK as an npm package: `npm pack` in sdk/web makes it, and a TypeScript app that
// uses every method and event (types/app.ts) compiles against the packed types with
// `tsc --strict`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const here = path.dirname(new URL(import.meta.url).pathname);
const sdk = path.resolve(here, '../../sdk/web');

test('npm pack makes the SDK package and a strict TypeScript app compiles against it', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-pack-'));
  try {
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', dir], { cwd: sdk }).toString();
    const [info] = JSON.parse(out);
    const files = info.files.map((f) => f.path).sort();
    assert.deepEqual(files, ['README.md', 'package.json', 'switchboard.d.ts', 'switchboard.js']);
    const version = JSON.parse(fs.readFileSync(path.join(sdk, 'package.json'), 'utf8')).version;
    assert.match(fs.readFileSync(path.join(sdk, 'switchboard.js'), 'utf8'), new RegExp(`SDK_VERSION = '${version}'`), 'SDK_VERSION is the package version');
    // Installed as an app would have it: node_modules/@switchboard/web-sdk.
    const pkg = path.join(dir, 'app', 'node_modules', '@switchboard', 'web-sdk');
    fs.mkdirSync(pkg, { recursive: true });
    execFileSync('tar', ['xzf', path.join(dir, info.filename), '-C', pkg, '--strip-components=1']);
    fs.copyFileSync(path.join(here, 'types', 'app.ts'), path.join(dir, 'app', 'app.ts'));
    fs.writeFileSync(path.join(dir, 'app', 'tsconfig.json'), JSON.stringify({
      compilerOptions: {
        strict: true, noEmit: true, target: 'es2022', module: 'esnext', moduleResolution: 'bundler',
        lib: ['es2022', 'dom'], skipLibCheck: false,
      },
      files: ['app.ts'],
    }));
    const tsc = path.join(here, 'node_modules', '.bin', 'tsc');
    try {
      execFileSync(tsc, ['-p', path.join(dir, 'app')], { stdio: 'pipe' });
    } catch (e) {
      assert.fail(`tsc --strict failed:\n${e.stdout}${e.stderr}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
