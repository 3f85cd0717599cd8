package chaincode

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/cairn-ledger/cairn/internal/proccpu"
)

// The cost of one GetState round trip (issue 5): a real fabric-chaincode-go
// shim over mutual TLS on loopback, in this process, against Support with an
// in-memory simulator, so what is measured is the protocol (shim, gRPC, TLS,
// the peer's handler), not a state database. A transaction doing n GetStates
// is timed against one doing none; the difference divided by n is the cost of
// one GetState. Run it with
//
//	go test -run '^$' -bench GetStateRoundTrip -benchtime 2000x ./peer/internal/chaincode

const getterID = "getter_1.0:0123456789abcdef"

// getter is a chaincode whose Invoke("get", n) reads keys k0…k(n-1), one
// GetState each.
type getter struct{}

func (getter) Init(shim.ChaincodeStubInterface) *peer.Response { return shim.Success(nil) }

func (getter) Invoke(stub shim.ChaincodeStubInterface) *peer.Response {
	_, params := stub.GetFunctionAndParameters()
	n, err := strconv.Atoi(params[0])
	if err != nil {
		return shim.Error(err.Error())
	}
	for i := range n {
		if _, err := stub.GetState("k" + strconv.Itoa(i)); err != nil {
			return shim.Error(err.Error())
		}
	}
	return shim.Success(nil)
}

// startGetter runs getter through the real shim, dialling addr over mutual TLS.
func startGetter(b *testing.B, s *Support, addr string, pki *testPKI) {
	b.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.clientTLS(b))))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := peer.NewChaincodeSupportClient(conn).Register(ctx)
	if err != nil {
		b.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = shim.StartInProc(getterID, stream, getter{})
	}()
	b.Cleanup(func() {
		cancel()
		conn.Close()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			b.Error("getter chaincode did not stop")
		}
	})
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := s.WaitRegistered(wctx, getterID); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkGetStateRoundTrip(b *testing.B) {
	const n = 50 // GetStates in the measured transaction
	s := New(Config{})
	pki := newTestPKI(b)
	addr := startServer(b, s, pki)
	startGetter(b, s, addr, pki)
	world := map[string][]byte{}
	for i := range n {
		world[nsKey("getter", "k"+strconv.Itoa(i))] = []byte(fmt.Sprintf(`{"ID":"k%d","Color":"blue","Size":5}`, i))
	}
	tx := 0
	execute := func(gets int) (wall, cpu time.Duration) {
		tx++
		txID := fmt.Sprintf("tx%08d", tx)
		input := args("get", strconv.Itoa(gets))
		sp := signedProposal(b, channelID, txID, pki.identityPEM, input, nil)
		c0, t0 := proccpu.Self(), time.Now()
		res, err := s.Execute(context.Background(), Invocation{
			PackageID: getterID, Namespace: "getter", ChannelID: channelID, TxID: txID,
			SignedProposal: sp, Input: input,
		}, newMemSim(world))
		wall, cpu = time.Since(t0), proccpu.Self()-c0
		if err != nil || res.Response.Status != 200 {
			b.Fatalf("get %d: %v %v", gets, err, res)
		}
		return wall, cpu
	}
	for range 100 { // warm up: connections, buffers, goroutine stacks
		execute(0)
		execute(n)
	}
	var wall0, wallN, cpu0, cpuN time.Duration
	b.ResetTimer()
	for range b.N {
		w, c := execute(0)
		wall0, cpu0 = wall0+w, cpu0+c
		w, c = execute(n)
		wallN, cpuN = wallN+w, cpuN+c
	}
	b.StopTimer()
	per := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(b.N) }
	b.ReportMetric(per(wall0), "µs/tx-0-gets")
	b.ReportMetric(per(wallN-wall0)/n, "µs/GetState")
	b.ReportMetric(per(cpuN-cpu0)/n, "cpu-µs/GetState")
}
