// Package adminsdk is the acceptance test of Cairn with
// github.com/hyperledger/fabric-admin-sdk v0.2.0: its chaincode package runs
// the whole chaincode lifecycle (install, approve for two organisations,
// check commit readiness, commit, query, and a sequence-2 upgrade that
// changes the endorsement policy) against a local network the cairn binary
// starts, and the fabric-gateway client checks that validation follows the
// committed policy. Its channel and discovery packages create a channel on
// the orderers' channel participation API, join the peers to it, read
// channels, config blocks and chain info back from orderers and peers, and
// query the peers' membership.
//
// It is a module of its own because fabric-admin-sdk v0.2.0 requires
// fabric-gateway v1.11.0 while the main module stays on v1.10.0. Go forbids
// importing the main module's internal packages from here, so the test
// drives the network through the cairn command (`cairn network up|down`,
// `cairn channel genesis`) and reads network.json as any application would.
// The package holds no code besides its test.
package adminsdk
