// The report harness both SDK scripts share (gateway.mjs and legacy.cjs):
// named checks that record failures and let later ones run, the JSON report
// on stdout, and the run guard. CommonJS so that the ESM script can import
// it and the CommonJS one require it.

'use strict';

const eventTimeoutMs = 60_000; // how long to wait for one event before failing
const scriptTimeoutMs = 240_000; // the whole run, as a last resort

const checks = [];
const report = { ok: false, versions: {}, peer: {}, checks };

/** check runs one named step; a throw records the failure and later steps go on. */
async function check(describeError, name, fn) {
    const began = Date.now();
    const entry = { name, ok: false };
    checks.push(entry);
    try {
        Object.assign(entry, (await fn()) ?? {});
        entry.ok = true;
    } catch (err) {
        entry.error = describeError(err);
    }
    entry.ms = Date.now() - began;
    return entry;
}

/** assert throws with message unless cond holds. */
function assert(cond, message) {
    if (!cond) {
        throw new Error(`assertion failed: ${message}`);
    }
}

/**
 * main reads NETWORK_JSON [ORG_INDEX] from the command line, runs
 * run(networkFile, orgIndex) under the script guard, and prints the report:
 * exit 0 if every check passed, 1 if one failed, 2 on bad usage.
 */
async function main(script, run, describeError) {
    const [networkFile, orgArg = '0'] = process.argv.slice(2);
    if (!networkFile || !/^\d+$/.test(orgArg)) {
        console.error(`usage: node ${script} NETWORK_JSON [ORG_INDEX]`);
        process.exit(2);
    }
    const guard = setTimeout(() => {
        checks.push({ name: 'scriptTimeout', ok: false, error: { message: `run exceeded ${scriptTimeoutMs} ms` } });
        finish();
    }, scriptTimeoutMs);
    try {
        await run(networkFile, Number(orgArg));
    } catch (err) {
        checks.push({ name: 'setup', ok: false, error: describeError(err) });
    }
    clearTimeout(guard);
    finish();
}

function finish() {
    report.ok = checks.length > 0 && checks.every((c) => c.ok);
    const json = JSON.stringify(report, (_, v) => (typeof v === 'bigint' ? v.toString() : v));
    process.stdout.write(json + '\n', () => process.exit(report.ok ? 0 : 1));
}

module.exports = { eventTimeoutMs, report, checks, check, assert, main };
