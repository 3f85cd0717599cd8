// Package nodegateway is the acceptance test of Cairn with the official
// Fabric Gateway Node SDK (npm @hyperledger/fabric-gateway over
// @grpc/grpc-js), the client most business applications use: gateway.mjs
// drives the SDK exactly as Fabric's samples do against a local network the
// cairn binary starts, and the Go test checks the JSON report it prints.
// legacy.cjs does the same with the legacy SDK, npm fabric-network 2.2,
// which uses the Discovery, Endorser, Broadcast and Deliver services itself.
//
// It is a module of its own, needing only the standard library, so that the
// root's `go test ./...` neither starts a network nor needs Node, and so that
// node_modules stays out of the main module. The test drives the network
// through the cairn command (`cairn network up|down`) and network.json, as an
// application would. The package holds no code besides its test.
package nodegateway
