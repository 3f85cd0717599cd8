// Acceptance check of Cairn with the legacy Fabric Node SDK, fabric-network
// 2.2 (over fabric-common), used as business applications and the 2.2
// fabric-samples use it: a common connection profile, an in-memory wallet,
// discovery, endorsement sent straight to the peers' Endorser service,
// transactions broadcast straight to the orderer and commits awaited on the
// peers' Deliver services.
//
// Usage: node legacy.cjs NETWORK_JSON [ORG_INDEX]
//
// NETWORK_JSON is the network.json that `cairn network up` writes (schema:
// internal/localnet/info.go); the script connects through the first peer of
// the organisation at ORG_INDEX (default 0) as its user1 and runs the basic
// chaincode (asset-transfer-basic) on the network's channel. It prints one
// JSON object, {"ok", "versions", "peer", "checks": [{"name", "ok", ...}]},
// on stdout and exits 1 if any check failed (2 on bad usage). The SDK's
// warnings and errors go to stderr.

'use strict';

const { readFile } = require('node:fs/promises');
const path = require('node:path');
const util = require('node:util');
const harness = require('./harness.cjs');

// fabric-common's default logger writes info and warn lines to stdout, where
// the report goes: give the SDK one that writes to stderr before it loads.
const quiet = () => {};
global.hfc = {
    logger: {
        debug: quiet,
        info: quiet,
        warn: (...args) => process.stderr.write(`fabric-sdk warn: ${util.format(...args)}\n`),
        error: (...args) => process.stderr.write(`fabric-sdk error: ${util.format(...args)}\n`),
    },
};
const { DefaultEventHandlerStrategies, Gateway, Wallets } = require('fabric-network');
const { BlockDecoder } = require('fabric-common');

const chaincodeName = 'basic';
const { eventTimeoutMs, report, assert } = harness;
const check = (name, fn) => harness.check(describeError, name, fn);

function describeError(err) {
    if (!(err instanceof Error)) {
        return { message: String(err) };
    }
    const out = { type: err.constructor?.name ?? 'Error', message: err.message };
    if (err.status !== undefined) out.status = err.status;
    if (Array.isArray(err.responses)) {
        out.responses = err.responses.map((r) => ({ peer: r?.connection?.name, status: r?.response?.status, message: r?.response?.message }));
    }
    if (Array.isArray(err.errors)) {
        out.errors = err.errors.map((e) => ({ peer: e?.connection?.name, message: e?.message }));
    }
    return out;
}

/** packageVersion is the version of the package name as required from the folder from. */
async function packageVersion(name, from = __dirname) {
    const file = require.resolve(`${name}/package.json`, { paths: [from] });
    return JSON.parse(await readFile(file, 'utf8')).version;
}

/** within rejects if promise does not settle within ms. */
function within(promise, ms, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---- connection profile and wallet -----------------------------------------

const pem = (file) => readFile(file, 'utf8');

/**
 * connectionProfile builds a Fabric common connection profile from
 * network.json: every organisation with its peers, every peer and orderer
 * with a grpcs:// URL, its TLS root and the TLS server name to check. With
 * channelPeers, the channel section lists every peer and orderer, for a
 * gateway that does not use discovery.
 */
async function connectionProfile(info, org, channelPeers) {
    const endpoint = async (node) => ({
        url: `grpcs://${node.address}`,
        tlsCACerts: { pem: await pem(node.tlsRootCert) },
        grpcOptions: { 'ssl-target-name-override': node.name, hostnameOverride: node.name },
    });
    const ccp = {
        name: 'cairn',
        version: '1.0.0',
        client: {
            organization: org.mspId,
            connection: { timeout: { peer: { endorser: '60' }, orderer: '60' } },
        },
        organizations: {},
        peers: {},
        orderers: {},
    };
    for (const o of info.organizations) {
        ccp.organizations[o.mspId] = { mspid: o.mspId, peers: o.peers.map((p) => p.name) };
        for (const p of o.peers) {
            ccp.peers[p.name] = await endpoint(p);
        }
    }
    for (const o of info.orderers) {
        ccp.orderers[o.name] = await endpoint(o);
    }
    if (channelPeers) {
        const peers = {};
        for (const name of Object.keys(ccp.peers)) {
            peers[name] = { endorsingPeer: true, chaincodeQuery: true, ledgerQuery: true, eventSource: true };
        }
        ccp.channels = { [info.channel]: { orderers: Object.keys(ccp.orderers), peers } };
    }
    return ccp;
}

async function newWallet(org) {
    const wallet = await Wallets.newInMemoryWallet();
    for (const [label, user] of Object.entries(org.users)) {
        await wallet.put(label, {
            credentials: { certificate: await pem(user.cert), privateKey: await pem(user.key) },
            mspId: org.mspId,
            type: 'X.509',
        });
    }
    return wallet;
}

async function connect(ccp, wallet, discovery) {
    const gateway = new Gateway();
    await gateway.connect(ccp, {
        wallet,
        identity: 'user1',
        discovery,
        // The samples' defaults, widened for a loaded test machine (seconds).
        eventHandlerOptions: { endorseTimeout: 60, commitTimeout: 120, strategy: DefaultEventHandlerStrategies.MSPID_SCOPE_ALLFORTX },
        queryHandlerOptions: { timeout: 30 },
    });
    return gateway;
}

// ---- helpers over SDK results -----------------------------------------------

function assetJSON(buffer) {
    return JSON.parse(buffer.toString('utf8'));
}

/**
 * decodeProcessedTransaction returns the ID, validation code and endorsing
 * MSP IDs of a transaction as qscc's GetTransactionByID returns it (a
 * ProcessedTransaction).
 */
function decodeProcessedTransaction(bytes) {
    const processed = BlockDecoder.decodeTransaction(bytes);
    const payload = processed.transactionEnvelope.payload;
    const mspIds = [];
    for (const action of payload.data.actions ?? []) {
        for (const endorsement of action.payload.action.endorsements ?? []) {
            mspIds.push(endorsement.endorser.mspid);
        }
    }
    return {
        validationCode: processed.validationCode,
        txId: payload.header.channel_header.tx_id,
        endorsers: mspIds.sort(),
    };
}

/** waitFor resolves with the first value test accepts of the events a listener gets. */
function waitFor(test, what) {
    let settle;
    const got = new Promise((resolve, reject) => {
        settle = { resolve, reject };
    });
    const listener = async (event) => {
        try {
            const value = test(event);
            if (value !== undefined) settle.resolve(value);
        } catch (err) {
            settle.reject(err);
        }
    };
    return { listener, result: within(got, eventTimeoutMs, what) };
}

// ---- the run ------------------------------------------------------------------

async function run(networkFile, orgIndex) {
    report.versions = {
        node: process.version,
        fabricNetwork: await packageVersion('fabric-network'),
        fabricCommon: await packageVersion('fabric-common'),
        // fabric-protos 2.2 brings its own @grpc/grpc-js 1.9.
        grpcJs: await packageVersion('@grpc/grpc-js', path.dirname(require.resolve('fabric-protos'))),
    };

    const info = JSON.parse(await readFile(networkFile, 'utf8'));
    const org = info.organizations?.[orgIndex];
    assert(org, `network.json has no organisation ${orgIndex}`);
    const peer = org.peers?.[0];
    assert(peer && org.users?.user1, `organisation ${org.mspId} has no peer or no user1`);
    const channelName = info.channel;
    const allMSPs = info.organizations.map((o) => o.mspId).sort();
    report.peer = { name: peer.name, address: peer.address, mspId: org.mspId, channel: channelName };

    const wallet = await newWallet(org);
    const gateways = [];
    try {
        let network;
        const connected = await check('connect', async () => {
            const gateway = await connect(await connectionProfile(info, org, false), wallet, { enabled: true, asLocalhost: false });
            gateways.push(gateway);
            network = await gateway.getNetwork(channelName);
        });
        if (!connected.ok) {
            return; // every other check needs the network
        }
        const contract = network.getContract(chaincodeName);
        const assetId = `legacy-${Date.now()}-${process.pid}`;
        const state = {};

        await check('discovery', async () => {
            // The discovery results the SDK plans with: the channel's MSPs and
            // orderers (config query), both organisations' peers running
            // basic (peers query), and an endorsement plan asking for one
            // peer of each organisation (MAJORITY of two).
            const results = await network.discoveryService.getDiscoveryResults(true);
            const msps = Object.keys(results.msps ?? {}).sort();
            for (const mspId of allMSPs) {
                assert(msps.includes(mspId), `discovered MSPs ${msps}, missing ${mspId}`);
            }
            const orderers = Object.values(results.orderers ?? {}).flatMap((o) => o.endpoints.map((e) => `${e.host}:${e.port}`));
            assert(info.orderers.every((o) => orderers.includes(o.address)), `discovered orderers ${orderers}, want ${info.orderers.map((o) => o.address)}`);
            const peers = [];
            for (const [mspId, byOrg] of Object.entries(results.peers_by_org ?? {})) {
                for (const p of byOrg.peers) {
                    assert(p.mspid === mspId, `peer ${p.endpoint} of ${p.mspid} listed under ${mspId}`);
                    assert(p.chaincodes.some((c) => c.name === chaincodeName), `peer ${p.endpoint} does not run ${chaincodeName}`);
                    peers.push({ endpoint: p.endpoint, mspId, ledgerHeight: p.ledgerHeight.toString() });
                }
            }
            const wantPeers = info.organizations.flatMap((o) => o.peers.map((p) => p.address)).sort();
            assert(JSON.stringify(peers.map((p) => p.endpoint).sort()) === JSON.stringify(wantPeers), `discovered peers ${JSON.stringify(peers)}, want ${wantPeers}`);

            // The contract's own discovery service asks for the plan of its
            // chaincode interest.
            assert(await contract.getDiscoveryHandler(), 'no discovery handler for the chaincode');
            const service = await contract.discoveryService;
            const endorsement = (await service.getDiscoveryResults(true)).endorsement_plan;
            assert(endorsement?.chaincode === chaincodeName, `endorsement plan for ${endorsement?.chaincode}, want ${chaincodeName}`);
            const groups = Object.entries(endorsement.groups).map(([name, g]) => ({ name, mspIds: [...new Set(g.peers.map((p) => p.mspid))].sort(), peers: g.peers.length }));
            // A layout is {group: how many of its peers}.
            const layouts = endorsement.layouts.map((l) => Object.entries(l).map(([g, n]) => `${g}:${n}`).sort().join(','));
            assert(layouts.length >= 1, 'endorsement plan has no layout');
            const layoutMSPs = endorsement.layouts.map((l) => Object.keys(l).flatMap((g) => endorsement.groups[g].peers.map((p) => p.mspid)).sort());
            assert(layoutMSPs.every((m) => JSON.stringify([...new Set(m)]) === JSON.stringify(allMSPs)), `layouts ${JSON.stringify(layoutMSPs)} do not each need ${allMSPs}`);
            const endorsers = network.getChannel().getEndorsers().map((e) => e.name).sort();
            return { msps, orderers, peers, groups, layouts, endorsers };
        });

        await check('submitTransaction', async () => {
            const tx = contract.createTransaction('CreateAsset');
            const result = await tx.submit(assetId, 'yellow', '5', 'Tom', '1300');
            assert(result.length === 0, `CreateAsset returned ${result.length} bytes, want none`);
            const txId = tx.getTransactionId();
            assert(/^[0-9a-f]{64}$/.test(txId), `transaction ID ${JSON.stringify(txId)} is not 64 lowercase hex digits`);
            state.create = txId;
            return { assetId, transactionId: txId };
        });

        await check('evaluateTransaction', async () => {
            const asset = assetJSON(await contract.evaluateTransaction('ReadAsset', assetId));
            const want = { ID: assetId, Color: 'yellow', Size: 5, Owner: 'Tom', AppraisedValue: 1300 };
            assert(JSON.stringify(asset) === JSON.stringify(want), `ReadAsset = ${JSON.stringify(asset)}, want ${JSON.stringify(want)}`);
            return { asset };
        });

        await check('getTransactionByID', async () => {
            // qscc through the SDK: the committed transaction, VALID, with one
            // endorsement from each organisation (the MAJORITY plan).
            assert(state.create, 'no CreateAsset transaction');
            const qscc = network.getContract('qscc');
            const got = decodeProcessedTransaction(await qscc.evaluateTransaction('GetTransactionByID', channelName, state.create));
            assert(got.txId === state.create, `GetTransactionByID returned transaction ${got.txId}`);
            assert(got.validationCode === 0, `validation code ${got.validationCode}, want VALID (0)`);
            assert(JSON.stringify(got.endorsers) === JSON.stringify(allMSPs), `endorsed by ${got.endorsers}, want ${allMSPs}`);
            return { transactionId: got.txId, validationCode: got.validationCode, endorsers: got.endorsers };
        });

        await check('contractListener', async () => {
            // A live contract listener gets the TransferAsset event of a
            // transaction submitted while it listens; the submit waits for
            // the commit on every peer of the network (DeliverFiltered on
            // both organisations' peers).
            const { listener, result } = waitFor(
                (event) => (event.eventName === 'TransferAsset' && event.getTransactionEvent().transactionId === state.transfer ? event : undefined),
                'TransferAsset contract event'
            );
            await contract.addContractListener(listener);
            try {
                const tx = contract.createTransaction('TransferAsset');
                tx.setEventHandler(DefaultEventHandlerStrategies.NETWORK_SCOPE_ALLFORTX);
                // submit builds the proposal, and so its transaction ID,
                // before its first await.
                const submitted = tx.submit(assetId, 'Saptha');
                state.transfer = tx.getTransactionId();
                const oldOwner = (await submitted).toString('utf8');
                assert(oldOwner === 'Tom', `TransferAsset result = ${JSON.stringify(oldOwner)}, want "Tom"`);
                const event = await result;
                const txEvent = event.getTransactionEvent();
                assert(event.chaincodeId === chaincodeName, `event chaincode ${event.chaincodeId}`);
                assert(txEvent.isValid && txEvent.status === 'VALID', `event transaction status ${txEvent.status}`);
                const payload = assetJSON(event.payload);
                assert(payload.ID === assetId && payload.Owner === 'Saptha', `event payload ${JSON.stringify(payload)}`);
                const blockNumber = txEvent.getBlockEvent().blockNumber.toString();
                state.transferBlock = blockNumber;
                return { eventName: event.eventName, transactionId: txEvent.transactionId, blockNumber, result: oldOwner, payload };
            } finally {
                contract.removeContractListener(listener);
            }
        });

        await check('blockListener', async () => {
            // A live full-block listener gets the block of a transaction
            // submitted while it listens, holding it VALID.
            let txId;
            const { listener, result } = waitFor(
                (block) => (txId && block.getTransactionEvents().some((t) => t.transactionId === txId) ? block : undefined),
                'block with the UpdateAsset transaction'
            );
            await network.addBlockListener(listener);
            try {
                const tx = contract.createTransaction('UpdateAsset');
                const submitted = tx.submit(assetId, 'purple', '7', 'Saptha', '1400');
                txId = tx.getTransactionId();
                await submitted;
                const block = await result;
                const txEvent = block.getTransactionEvents().find((t) => t.transactionId === txId);
                assert(txEvent.isValid && txEvent.status === 'VALID', `transaction status ${txEvent.status} in block ${block.blockNumber}`);
                assert(block.blockData.header.number.toString() === block.blockNumber.toString(), 'block event number differs from its header');
                return { transactionId: txId, blockNumber: block.blockNumber.toString(), transactions: block.getTransactionEvents().length };
            } finally {
                network.removeBlockListener(listener);
            }
        });

        await check('blockReplay', async () => {
            // A filtered block listener from a start block (Deliver with a
            // start position) replays the TransferAsset block.
            assert(state.transferBlock, 'no TransferAsset block');
            const { listener, result } = waitFor(
                (block) => (block.blockNumber.toString() === state.transferBlock ? block : undefined),
                `filtered block ${state.transferBlock}`
            );
            await network.addBlockListener(listener, { type: 'filtered', startBlock: Number(state.transferBlock) });
            try {
                const block = await result;
                const txEvent = block.getTransactionEvents().find((t) => t.transactionId === state.transfer);
                assert(txEvent, `filtered block ${block.blockNumber} lacks transaction ${state.transfer}`);
                assert(txEvent.isValid, `transaction status ${txEvent.status}`);
                const events = txEvent.getContractEvents().map((e) => e.eventName);
                assert(events.includes('TransferAsset'), `filtered transaction events ${events}`);
                return { blockNumber: block.blockNumber.toString(), transactionId: txEvent.transactionId, eventName: 'TransferAsset' };
            } finally {
                network.removeBlockListener(listener);
            }
        });

        await check('endorseError', async () => {
            // A chaincode error on submit: the SDK gathers every endorser's
            // response and throws with the chaincode's message.
            const missing = `${assetId}-missing`;
            try {
                await contract.submitTransaction('UpdateAsset', missing, 'blue', '1', 'Nobody', '1');
            } catch (err) {
                assert(err.message.includes(`the asset ${missing} does not exist`), `error ${JSON.stringify(err.message)} lacks the chaincode's message`);
                const responses = (err.responses ?? []).map((r) => ({ peer: r.connection?.name, status: r.response?.status, message: r.response?.message }));
                assert(responses.length > 0, 'error carries no endorsement responses');
                for (const r of responses) {
                    assert(r.status === 500 && r.message === `the asset ${missing} does not exist`, `response ${JSON.stringify(r)}`);
                }
                return { message: err.message, responses };
            }
            throw new Error('UpdateAsset of a missing asset was submitted');
        });

        await check('evaluateError', async () => {
            const missing = `${assetId}-missing`;
            try {
                await contract.evaluateTransaction('ReadAsset', missing);
            } catch (err) {
                assert(err.message.includes(`the asset ${missing} does not exist`), `error ${JSON.stringify(err.message)} lacks the chaincode's message`);
                return { message: err.message, status: err.status };
            }
            throw new Error('ReadAsset of a missing asset returned');
        });

        await check('withoutDiscovery', async () => {
            // discovery disabled: the channel's peers and orderer come from
            // the profile, every peer endorses, the commit is awaited on the
            // organisation's peers.
            const gateway = await connect(await connectionProfile(info, org, true), wallet, { enabled: false });
            gateways.push(gateway);
            const plain = (await gateway.getNetwork(channelName)).getContract(chaincodeName);
            const id = `${assetId}-nodisc`;
            const tx = plain.createTransaction('CreateAsset');
            await tx.submit(id, 'green', '3', 'Ana', '300');
            const asset = assetJSON(await plain.evaluateTransaction('ReadAsset', id));
            assert(asset.Owner === 'Ana', `ReadAsset owner ${asset.Owner}`);
            return { transactionId: tx.getTransactionId() };
        });
    } finally {
        for (const gateway of gateways) {
            gateway.disconnect();
        }
    }
}

harness.main('legacy.cjs', run, describeError);
