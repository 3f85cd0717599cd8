// Acceptance check of Cairn with the official Fabric Gateway Node SDK
// (@hyperledger/fabric-gateway, over @grpc/grpc-js), used exactly as
// Fabric's samples use it (fabric-samples asset-transfer-basic
// application-gateway-typescript and asset-transfer-events).
//
// Usage: node gateway.mjs NETWORK_JSON [ORG_INDEX]
//
// NETWORK_JSON is the network.json that `cairn network up` writes (schema:
// internal/localnet/info.go); the script connects to the first peer of the
// organisation at ORG_INDEX (default 0) as its user1 and runs the basic
// chaincode (asset-transfer-basic) on the network's channel. It prints one
// JSON object, {"ok", "versions", "peer", "checks": [{"name", "ok", ...}]},
// and exits 1 if any check failed (2 on bad usage).

import harness from './harness.cjs';
import * as grpc from '@grpc/grpc-js';
import {
    EndorseError,
    GatewayError,
    StatusCode,
    checkpointers,
    connect,
    hash,
    signers,
} from '@hyperledger/fabric-gateway';
import { common, peer as peerProtos } from '@hyperledger/fabric-protos';
import { createPrivateKey } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const chaincodeName = 'basic';
const { eventTimeoutMs, report, assert } = harness;
const utf8 = new TextDecoder();
const check = (name, fn) => harness.check(describeError, name, fn);

function describeError(err) {
    if (!(err instanceof Error)) {
        return { message: String(err) };
    }
    const out = { type: err.constructor?.name ?? 'Error', message: err.message };
    if (err.code !== undefined) out.code = err.code;
    if (err.details !== undefined) out.details = err.details;
    if (err.transactionId !== undefined) out.transactionId = err.transactionId;
    if (err.cause?.message) out.cause = err.cause.message;
    return out;
}

async function packageVersion(dir, name) {
    const raw = await readFile(path.join(dir, 'node_modules', name, 'package.json'), 'utf8');
    return JSON.parse(raw).version;
}

// ---- connection, exactly as the Fabric samples do it -------------------------

async function newGrpcConnection(peer) {
    const tlsRootCert = await readFile(peer.tlsRootCert);
    const tlsCredentials = grpc.credentials.createSsl(tlsRootCert);
    return new grpc.Client(peer.address, tlsCredentials, {
        'grpc.ssl_target_name_override': peer.name,
    });
}

async function newIdentity(mspId, user) {
    return { mspId, credentials: await readFile(user.cert) };
}

async function newSigner(user) {
    const privateKey = createPrivateKey(await readFile(user.key));
    return signers.newPrivateKeySigner(privateKey);
}

function deadlineIn(ms) {
    return () => ({ deadline: Date.now() + ms });
}

function connectGateway(client, identity, signer) {
    return connect({
        client,
        identity,
        signer,
        hash: hash.sha256,
        // Default timeouts of the samples, widened for a loaded test machine.
        evaluateOptions: deadlineIn(30_000),
        endorseOptions: deadlineIn(60_000),
        submitOptions: deadlineIn(30_000),
        commitStatusOptions: deadlineIn(120_000),
    });
}

function waitForReady(client, ms) {
    return new Promise((resolve, reject) => {
        client.waitForReady(Date.now() + ms, (err) => (err ? reject(err) : resolve()));
    });
}

// ---- events ----------------------------------------------------------------

/**
 * nextWithin returns the next value of an SDK event stream, closing the
 * stream and throwing if none comes within eventTimeoutMs.
 */
async function nextWithin(events, iterator, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => {
            events.close();
            reject(new Error(`no ${what} within ${eventTimeoutMs} ms`));
        }, eventTimeoutMs);
    });
    try {
        const { value, done } = await Promise.race([iterator.next(), timeout]);
        assert(!done, `${what}: the event stream ended`);
        return value;
    } finally {
        clearTimeout(timer);
    }
}

/** transactionIDs returns the transaction ID of each envelope of a block. */
function transactionIDs(block) {
    return block
        .getData()
        .getDataList_asU8()
        .map((raw) => {
            const envelope = common.Envelope.deserializeBinary(raw);
            const payload = common.Payload.deserializeBinary(envelope.getPayload_asU8());
            const header = common.ChannelHeader.deserializeBinary(payload.getHeader().getChannelHeader_asU8());
            return header.getTxId();
        });
}

function assetJSON(bytes) {
    return JSON.parse(utf8.decode(bytes));
}

// ---- the run ---------------------------------------------------------------

async function run(networkFile, orgIndex) {
    const here = path.dirname(fileURLToPath(import.meta.url));
    report.versions = {
        node: process.version,
        fabricGateway: await packageVersion(here, '@hyperledger/fabric-gateway'),
        grpcJs: await packageVersion(here, '@grpc/grpc-js'),
        fabricProtos: await packageVersion(here, '@hyperledger/fabric-protos'),
    };

    const info = JSON.parse(await readFile(networkFile, 'utf8'));
    const org = info.organizations?.[orgIndex];
    assert(org, `network.json has no organisation ${orgIndex}`);
    const peer = org.peers?.[0];
    const user = org.users?.user1;
    assert(peer && user, `organisation ${org.mspId} has no peer or no user1`);
    const channelName = info.channel;
    report.peer = { name: peer.name, address: peer.address, mspId: org.mspId, channel: channelName };

    const identity = await newIdentity(org.mspId, user);
    const signer = await newSigner(user);
    const scratch = await mkdtemp(path.join(tmpdir(), 'cairn-nodegateway-'));
    const clients = [];
    const newClient = async () => {
        const client = await newGrpcConnection(peer);
        clients.push(client);
        return client;
    };

    try {
        const client = await newClient();
        const ready = await check('grpcReady', async () => {
            // TLS handshake (with ALPN h2) and HTTP/2 setup with the peer.
            await waitForReady(client, 30_000);
        });
        if (!ready.ok) {
            return; // every other check would wait out its deadline
        }

        const gateway = connectGateway(client, identity, signer);
        const network = gateway.getNetwork(channelName);
        const contract = network.getContract(chaincodeName);
        const assetId = `node-${Date.now()}-${process.pid}`;
        // valid: every transaction this run committed VALID, in commit
        // order ({txId, blockNumber}); invalid: those that failed validation.
        const state = { valid: [], invalid: [] };

        await check('submitTransaction', async () => {
            const result = await contract.submitTransaction('CreateAsset', assetId, 'yellow', '5', 'Tom', '1300');
            assert(result.length === 0, `CreateAsset returned ${result.length} bytes, want none`);
            return { assetId };
        });

        await check('evaluateTransaction', async () => {
            const asset = assetJSON(await contract.evaluateTransaction('ReadAsset', assetId));
            const want = { ID: assetId, Color: 'yellow', Size: 5, Owner: 'Tom', AppraisedValue: 1300 };
            assert(JSON.stringify(asset) === JSON.stringify(want), `ReadAsset = ${JSON.stringify(asset)}, want ${JSON.stringify(want)}`);
            return { asset };
        });

        await check('submitAsync', async () => {
            const commit = await contract.submitAsync('TransferAsset', { arguments: [assetId, 'Saptha'] });
            const oldOwner = utf8.decode(commit.getResult());
            assert(oldOwner === 'Tom', `TransferAsset result = ${JSON.stringify(oldOwner)}, want "Tom"`);
            const txId = commit.getTransactionId();
            assert(/^[0-9a-f]{64}$/.test(txId), `transaction ID ${JSON.stringify(txId)} is not 64 lowercase hex digits`);
            const status = await commit.getStatus();
            assert(status.successful === true, `status.successful = ${status.successful}`);
            assert(status.code === StatusCode.VALID, `status.code = ${status.code}, want VALID (0)`);
            assert(status.transactionId === txId, `status.transactionId = ${status.transactionId}, want ${txId}`);
            assert(typeof status.blockNumber === 'bigint' && status.blockNumber > 0n, `status.blockNumber = ${status.blockNumber}`);
            const asset = assetJSON(await contract.evaluateTransaction('ReadAsset', assetId));
            assert(asset.Owner === 'Saptha', `owner after TransferAsset = ${asset.Owner}`);
            state.transfer = { txId, blockNumber: status.blockNumber };
            state.valid.push(state.transfer);
            return { transactionId: txId, blockNumber: status.blockNumber.toString(), code: status.code, result: oldOwner };
        });

        await check('getAllAssets', async () => {
            const assets = assetJSON(await contract.evaluateTransaction('GetAllAssets'));
            assert(Array.isArray(assets), 'GetAllAssets did not return a JSON array');
            const mine = assets.find((a) => a.ID === assetId);
            assert(mine?.Owner === 'Saptha', `GetAllAssets lacks ${assetId} owned by Saptha`);
            return { count: assets.length };
        });

        await check('chaincodeEvents', async () => {
            assert(state.transfer, 'no TransferAsset commit to read events from');
            const { txId, blockNumber } = state.transfer;
            const checkpointFile = path.join(scratch, 'checkpoint.json');
            const checkpointer = await checkpointers.file(checkpointFile);
            const events = await network.getChaincodeEvents(chaincodeName, { startBlock: blockNumber });
            try {
                const event = await nextWithin(events, events[Symbol.asyncIterator](), 'TransferAsset chaincode event');
                assert(event.transactionId === txId, `first event from block ${blockNumber} is transaction ${event.transactionId}, want ${txId}`);
                assert(event.blockNumber === blockNumber, `event block ${event.blockNumber}, want ${blockNumber}`);
                assert(event.chaincodeName === chaincodeName, `event chaincode ${event.chaincodeName}`);
                assert(event.eventName === 'TransferAsset', `event name ${event.eventName}, want TransferAsset`);
                const payload = assetJSON(event.payload);
                assert(payload.ID === assetId && payload.Owner === 'Saptha', `event payload ${JSON.stringify(payload)}`);
                await checkpointer.checkpointChaincodeEvent(event);
                state.checkpointFile = checkpointFile;
                return { eventName: event.eventName, blockNumber: event.blockNumber.toString(), transactionId: event.transactionId, payload };
            } finally {
                events.close();
            }
        });

        await check('chaincodeEventsCheckpointResume', async () => {
            assert(state.checkpointFile, 'no checkpoint from chaincodeEvents');
            // Two transactions while no listener runs...
            const submitted = await Promise.all([
                contract.submitAsync('UpdateAsset', { arguments: [assetId, 'purple', '7', 'Saptha', '1400'] }),
                contract.submitAsync('CreateAsset', { arguments: [`${assetId}-resume`, 'orange', '9', 'Ana', '900'] }),
            ]);
            const want = new Map();
            for (const commit of submitted) {
                const status = await commit.getStatus();
                assert(status.successful, `transaction ${status.transactionId}: code ${status.code}`);
                want.set(status.transactionId, status.blockNumber);
                state.valid.push({ txId: status.transactionId, blockNumber: status.blockNumber });
            }
            // ...then a restarted client (new connection, new gateway, the
            // checkpoint read back from its file) resumes after the last event
            // it handled: both arrive, once each, and nothing before them.
            const resumedClient = await newClient();
            const resumed = connectGateway(resumedClient, identity, signer);
            const checkpointer = await checkpointers.file(state.checkpointFile);
            assert(checkpointer.getTransactionId() === state.transfer.txId, 'checkpoint file lost the transaction ID');
            const events = await resumed.getNetwork(channelName).getChaincodeEvents(chaincodeName, {
                checkpoint: checkpointer,
                startBlock: 0n, // ignored when there is a checkpoint, as documented
            });
            const got = [];
            try {
                const it = events[Symbol.asyncIterator]();
                while (got.length < want.size) {
                    const event = await nextWithin(events, it, `chaincode event ${got.length + 1} after the checkpoint`);
                    assert(want.has(event.transactionId), `resumed stream delivered transaction ${event.transactionId} (${event.eventName}, block ${event.blockNumber}), want only ${[...want.keys()].join(', ')}`);
                    assert(!got.some((e) => e.transactionId === event.transactionId), `transaction ${event.transactionId} delivered twice`);
                    assert(event.blockNumber === want.get(event.transactionId), `event block ${event.blockNumber}, committed in ${want.get(event.transactionId)}`);
                    got.push(event);
                    await checkpointer.checkpointChaincodeEvent(event);
                }
            } finally {
                events.close();
            }
            // Resuming after the first of the two gives exactly the second:
            // within one block when they share it, which the checkpoint's
            // transaction ID (ChaincodeEventsRequest.after_transaction_id)
            // must handle.
            const inMemory = checkpointers.inMemory();
            await inMemory.checkpointChaincodeEvent(got[0]);
            const again = await resumed.getNetwork(channelName).getChaincodeEvents(chaincodeName, { checkpoint: inMemory });
            try {
                const event = await nextWithin(again, again[Symbol.asyncIterator](), 'chaincode event after an in-memory checkpoint');
                assert(event.transactionId === got[1].transactionId, `resumed after ${got[0].transactionId} with ${event.transactionId}, want ${got[1].transactionId}`);
            } finally {
                again.close();
                resumed.close();
            }
            return {
                events: got.map((e) => ({ eventName: e.eventName, blockNumber: e.blockNumber.toString(), transactionId: e.transactionId })),
                sameBlock: got[0].blockNumber === got[1].blockNumber,
            };
        });

        await check('blockEvents', async () => {
            assert(state.transfer, 'no TransferAsset commit');
            const { txId, blockNumber } = state.transfer;
            const blocks = await network.getBlockEvents({ startBlock: blockNumber });
            try {
                const block = await nextWithin(blocks, blocks[Symbol.asyncIterator](), `block ${blockNumber}`);
                assert(block instanceof common.Block, 'block event is not a common.Block');
                const number = BigInt(block.getHeader().getNumber());
                assert(number === blockNumber, `first block ${number}, want ${blockNumber}`);
                const ids = transactionIDs(block);
                const index = ids.indexOf(txId);
                assert(index >= 0, `block ${number} lacks transaction ${txId}: ${ids.join(', ')}`);
                const filter = block.getMetadata().getMetadataList_asU8()[common.BlockMetadataIndex.TRANSACTIONS_FILTER];
                assert(filter?.length === ids.length, `transactions filter has ${filter?.length} codes for ${ids.length} transactions`);
                assert(filter[index] === peerProtos.TxValidationCode.VALID, `validation code ${filter[index]}, want VALID`);
                return { blockNumber: number.toString(), transactions: ids.length };
            } finally {
                blocks.close();
            }
        });

        await check('filteredBlockEvents', async () => {
            assert(state.transfer, 'no TransferAsset commit');
            const { txId, blockNumber } = state.transfer;
            const blocks = await network.getFilteredBlockEvents({ startBlock: blockNumber });
            try {
                const block = await nextWithin(blocks, blocks[Symbol.asyncIterator](), `filtered block ${blockNumber}`);
                assert(BigInt(block.getNumber()) === blockNumber, `first filtered block ${block.getNumber()}, want ${blockNumber}`);
                assert(block.getChannelId() === channelName, `channel ${block.getChannelId()}`);
                const tx = block.getFilteredTransactionsList().find((t) => t.getTxid() === txId);
                assert(tx, `filtered block lacks transaction ${txId}`);
                assert(tx.getTxValidationCode() === peerProtos.TxValidationCode.VALID, `validation code ${tx.getTxValidationCode()}`);
                assert(tx.getType() === common.HeaderType.ENDORSER_TRANSACTION, `header type ${tx.getType()}`);
                const events = tx.getTransactionActions()?.getChaincodeActionsList().map((a) => a.getChaincodeEvent()) ?? [];
                assert(events.some((e) => e?.getEventName() === 'TransferAsset' && e.getChaincodeId() === chaincodeName && e.getPayload_asU8().length === 0),
                    'filtered transaction lacks the TransferAsset event (without payload)');
                return { blockNumber: block.getNumber().toString(), transactions: block.getFilteredTransactionsList().length };
            } finally {
                blocks.close();
            }
        });

        await check('blockAndPrivateDataEvents', async () => {
            assert(state.transfer, 'no TransferAsset commit');
            const { txId, blockNumber } = state.transfer;
            const events = await network.getBlockAndPrivateDataEvents({ startBlock: blockNumber });
            try {
                const event = await nextWithin(events, events[Symbol.asyncIterator](), `block and private data ${blockNumber}`);
                assert(event instanceof peerProtos.BlockAndPrivateData, 'event is not a peer.BlockAndPrivateData');
                const block = event.getBlock();
                const number = BigInt(block.getHeader().getNumber());
                assert(number === blockNumber, `first block ${number}, want ${blockNumber}`);
                assert(transactionIDs(block).includes(txId), `block ${number} lacks transaction ${txId}`);
                assert(event.getPrivateDataMapMap().getLength() === 0, 'private data for a chaincode without collections');
                return { blockNumber: number.toString() };
            } finally {
                events.close();
            }
        });

        await check('endorseError', async () => {
            const missing = `${assetId}-missing`;
            try {
                await contract.submitTransaction('UpdateAsset', missing, 'blue', '1', 'Nobody', '1');
            } catch (err) {
                assert(err instanceof EndorseError, `got ${err?.constructor?.name}: ${err?.message}, want EndorseError`);
                assert(err instanceof GatewayError, 'EndorseError is not a GatewayError');
                assert(err.code === grpc.status.ABORTED, `code = ${err.code}, want ABORTED (${grpc.status.ABORTED})`);
                assert(/^[0-9a-f]{64}$/.test(err.transactionId), `transactionId = ${JSON.stringify(err.transactionId)}`);
                assert(err.details.length > 0, 'no error details');
                // Fabric's gateway words a chaincode's error this way; the
                // peer's own failures come with their bare message instead.
                const want = `chaincode response 500, the asset ${missing} does not exist`;
                for (const d of err.details) {
                    assert(d.address && d.mspId, `detail without address or mspId: ${JSON.stringify(d)}`);
                    assert(d.message === want, `detail message ${JSON.stringify(d.message)}, want ${JSON.stringify(want)}`);
                }
                return { code: err.code, message: err.message, transactionId: err.transactionId, details: err.details };
            }
            throw new Error('UpdateAsset of a missing asset succeeded');
        });

        await check('evaluateError', async () => {
            const missing = `${assetId}-missing`;
            try {
                await contract.evaluateTransaction('ReadAsset', missing);
            } catch (err) {
                assert(err instanceof GatewayError, `got ${err?.constructor?.name}: ${err?.message}, want GatewayError`);
                assert(!(err instanceof EndorseError), 'evaluate failed with an EndorseError');
                assert(err.code === grpc.status.UNKNOWN, `code = ${err.code}, want UNKNOWN (${grpc.status.UNKNOWN})`);
                assert(err.details.length > 0, 'no error details');
                const want = `chaincode response 500, the asset ${missing} does not exist`;
                assert(err.details.every((d) => d.message === want), `details ${JSON.stringify(err.details)}, want message ${JSON.stringify(want)}`);
                return { code: err.code, message: err.message, details: err.details };
            }
            throw new Error('ReadAsset of a missing asset succeeded');
        });

        await check('commitStatusMVCCConflict', async () => {
            // Both updates are endorsed against the same version; the second
            // one submitted must fail validation.
            const endorse = (color) => contract.newProposal('UpdateAsset', { arguments: [assetId, color, '5', 'Saptha', '1300'] }).endorse();
            const [first, second] = [await endorse('red'), await endorse('green')];
            const firstStatus = await (await first.submit()).getStatus();
            assert(firstStatus.successful, `first update: code ${firstStatus.code}, want VALID`);
            state.valid.push({ txId: firstStatus.transactionId, blockNumber: firstStatus.blockNumber });
            const secondStatus = await (await second.submit()).getStatus();
            assert(!secondStatus.successful, 'second update committed VALID, want MVCC_READ_CONFLICT');
            assert(secondStatus.code === StatusCode.MVCC_READ_CONFLICT, `second update: code ${secondStatus.code}, want MVCC_READ_CONFLICT (${StatusCode.MVCC_READ_CONFLICT})`);
            assert(secondStatus.transactionId === second.getTransactionId(), 'status names another transaction');
            state.invalid.push(secondStatus.transactionId);
            const asset = assetJSON(await contract.evaluateTransaction('ReadAsset', assetId));
            assert(asset.Color === 'red', `color after the conflict = ${asset.Color}, want red`);
            return { validCode: firstStatus.code, conflictCode: secondStatus.code, blockNumber: secondStatus.blockNumber.toString() };
        });

        await check('offlineSigning', async () => {
            // The sample's off-line signing flow: a gateway without a signer,
            // each message signed by the application and handed back.
            const offline = connect({ client, identity, hash: hash.sha256, commitStatusOptions: deadlineIn(120_000) });
            try {
                const sign = (signable) => signer(signable.getDigest());
                const id = `${assetId}-offline`;
                const unsigned = offline.getNetwork(channelName).getContract(chaincodeName)
                    .newProposal('CreateAsset', { arguments: [id, 'white', '3', 'Offline', '10'] });
                const proposal = offline.newSignedProposal(unsigned.getBytes(), await sign(unsigned));
                const unsignedTx = await proposal.endorse();
                const tx = offline.newSignedTransaction(unsignedTx.getBytes(), await sign(unsignedTx));
                const unsignedCommit = await tx.submit();
                const commit = offline.newSignedCommit(unsignedCommit.getBytes(), await sign(unsignedCommit));
                const status = await commit.getStatus();
                assert(status.successful, `off-line signed CreateAsset: code ${status.code}`);
                assert(status.transactionId === proposal.getTransactionId(), 'status names another transaction');
                state.valid.push({ txId: status.transactionId, blockNumber: status.blockNumber });
                const asset = assetJSON(await contract.evaluateTransaction('ReadAsset', id));
                assert(asset.Owner === 'Offline', `off-line created asset owner = ${asset.Owner}`);
                return { transactionId: status.transactionId, blockNumber: status.blockNumber.toString() };
            } finally {
                offline.close();
            }
        });

        await check('chaincodeEventsReplay', async () => {
            // Every event from the TransferAsset block on: exactly the
            // transactions committed VALID since, each in its block, and none
            // of an invalidated one (the MVCC conflict above).
            assert(state.transfer, 'no TransferAsset commit');
            const want = new Map(state.valid.map((v) => [v.txId, v.blockNumber]));
            const events = await network.getChaincodeEvents(chaincodeName, { startBlock: state.transfer.blockNumber });
            const seen = new Set();
            let lastBlock = 0n;
            try {
                const it = events[Symbol.asyncIterator]();
                while (seen.size < want.size) {
                    const event = await nextWithin(events, it, `chaincode event ${seen.size + 1} of ${want.size}`);
                    assert(!state.invalid.includes(event.transactionId), `event ${event.eventName} of invalidated transaction ${event.transactionId}`);
                    assert(want.has(event.transactionId), `event ${event.eventName} of unknown transaction ${event.transactionId} (block ${event.blockNumber})`);
                    assert(!seen.has(event.transactionId), `transaction ${event.transactionId} delivered twice`);
                    assert(event.blockNumber === want.get(event.transactionId), `event block ${event.blockNumber}, committed in ${want.get(event.transactionId)}`);
                    assert(event.blockNumber >= lastBlock, `event from block ${event.blockNumber} after one from block ${lastBlock}`);
                    seen.add(event.transactionId);
                    lastBlock = event.blockNumber;
                }
            } finally {
                events.close();
            }
            return { count: seen.size, invalidSkipped: state.invalid.length };
        });

        gateway.close();
    } finally {
        for (const client of clients) {
            client.close();
        }
        await rm(scratch, { recursive: true, force: true });
    }
}

await harness.main('gateway.mjs', run, describeError);
