// Package lifecycle is the peer's `_lifecycle` system chaincode: installing
// chaincode packages on this peer, recording each organisation's approval of
// a chaincode definition on a channel, committing a definition once a
// majority of the channel's organisations approved it, and answering the
// queries that `peer lifecycle chaincode …` and fabric-admin-sdk send. It also
// owns the read side other parts of the peer use: the committed definition of
// a chaincode (Definition), the package an organisation approved
// (ApprovedPackageID), and the policy that endorses a `_lifecycle`
// transaction's writes (ValidationPolicyForWrites).
//
// Wire format. Function names, argument and result messages
// (fabric-protos-go-apiv2/peer/lifecycle) and error texts follow Fabric v2.5's
// core/chaincode/lifecycle, so unmodified clients see the answers they expect.
// On top of Fabric, a failed CommitChaincodeDefinition names the
// organisations that have not approved and which fields of their approvals
// differ, and CheckCommitReadiness fills the result's Mismatches map.
//
// Storage layout (ours, not Fabric's). All state lives in namespace
// `_lifecycle` of the channel's public state:
//
//	definitions/<name>                  lifecycle.CommitChaincodeDefinitionArgs
//	approvals/<MSPID>/<name>#<sequence> lifecycle.ApproveChaincodeDefinitionForMyOrgArgs
//
// Fabric keeps approvals in each organisation's implicit private collection;
// Cairn has no private data yet, so approvals are public and readable by
// every member of the channel, package ID included. The values are the
// lifecycle argument messages with defaults filled in (plugins "escc" and
// "vscc", validation parameter /Channel/Application/Endorsement), empty
// collections stored as absent, marshalled deterministically so that every
// endorser writes byte-identical read-write sets. Approvals are public, so
// an approval key is endorsed by its organisation's
// /Channel/Application/<MSPID>/Endorsement policy (Cairn names each
// application org's config group after its MSP ID) and a definition by
// /Channel/Application/LifecycleEndorsement; see ValidationPolicyForWrites.
//
// Installed packages live in Config.PackageDir, one file per package ID
// (`<label>.<sha256 hex>.tar.gz`, the package bytes unchanged), written to a
// temporary file and renamed into place so a crash never leaves a partial
// package under a real name.
//
// Concurrency: an SCC is safe for concurrent use; installs are serialised by
// a mutex, and channel functions touch only the State of their own
// Invocation. The package-level functions hold no state.
package lifecycle
