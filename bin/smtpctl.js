#!/usr/bin/env node
// Entry point of `npx smtpctl`: runs the TypeScript CLI through tsx, so there is no build step to forget.
require('tsx/cjs');
const { runCli } = require('../client/smtpctl.ts');

runCli(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`smtpctl: ${err && err.message ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
