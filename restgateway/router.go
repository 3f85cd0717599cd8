package restgateway

import (
	_ "embed"
	"fmt"
	"net/http"
	"strings"
	"time"
)

//go:embed openapi.json
var openAPIDocument []byte

// route is one endpoint. Routes with a nil authed handler are public.
type route struct {
	method, path string
	public       http.HandlerFunc
	authed       func(w http.ResponseWriter, r *http.Request, who *signer) error
}

// routes is the API; openapi_test.go checks that openapi.json describes
// exactly these.
func (g *Gateway) routes() []route {
	return []route{
		{method: http.MethodPost, path: "/v1/channels/{channel}/chaincodes/{chaincode}/transactions", authed: g.submit},
		{method: http.MethodPost, path: "/v1/channels/{channel}/chaincodes/{chaincode}/queries", authed: g.evaluate},
		{method: http.MethodGet, path: "/v1/channels/{channel}/transactions/{txid}", authed: g.txStatus},
		{method: http.MethodGet, path: "/v1/channels/{channel}/blocks", authed: g.blockEvents},
		{method: http.MethodGet, path: "/v1/channels/{channel}/chaincodes/{chaincode}/events", authed: g.chaincodeEvents},
		{method: http.MethodGet, path: "/openapi.json", public: g.openAPI},
		{method: http.MethodGet, path: "/healthz", public: g.health},
	}
}

func (g *Gateway) router() http.Handler {
	mux := http.NewServeMux()
	// paths knows every route's path without its method, to tell an
	// unknown path (404) from a known one called with the wrong method (405).
	paths := http.NewServeMux()
	allowed := map[string][]string{}
	for _, rt := range g.routes() {
		h := rt.public
		if rt.authed != nil {
			h = g.authenticated(rt.authed)
		}
		mux.Handle(rt.method+" "+rt.path, h)
		if _, seen := allowed[rt.path]; !seen {
			paths.Handle(rt.path, http.NotFoundHandler())
		}
		allowed[rt.path] = append(allowed[rt.path], rt.method)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := paths.Handler(r); pattern != "" {
			w.Header().Set("Allow", strings.Join(allowed[pattern], ", "))
			writeError(w, newAPIError(http.StatusMethodNotAllowed, codeMethodNotAllowed,
				fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path)))
			return
		}
		writeError(w, errNotFound(fmt.Sprintf("no route for %s %s; see /openapi.json", r.Method, r.URL.Path)))
	})
	return g.logged(mux)
}

// authenticated resolves the caller's identity before the handler runs and
// writes whatever error the handler returns.
func (g *Gateway) authenticated(h func(http.ResponseWriter, *http.Request, *signer) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, aerr := g.auth.identify(r)
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		if err := h(w, r, g.ids.byName[name]); err != nil {
			ae := toAPIError(err)
			if ae.cause != nil {
				// The response hides the cause; this is where it is handled.
				g.log.Error("request failed", "http.request.method", r.Method, "url.path", r.URL.Path,
					"identity", name, "error", ae.cause)
			}
			writeError(w, ae)
		}
	}
}

// statusRecorder remembers the status a handler wrote, for the request log.
// Unwrap lets http.ResponseController reach the Flusher of event streams.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (g *Gateway) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		g.log.Debug("request", "http.request.method", r.Method, "url.path", r.URL.Path,
			"http.response.status_code", rec.status, "event.duration", time.Since(start))
	})
}

func (g *Gateway) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPIDocument)
}

// health reports the gateway and the state of its peer connection; 503 when
// the connection is failing.
func (g *Gateway) health(w http.ResponseWriter, _ *http.Request) {
	body := map[string]any{"status": "OK", "time": time.Now().UTC(),
		"peer": map[string]string{"address": g.cfg.Peer.Address, "state": g.conn.GetState().String()}}
	if err := g.peerHealth(); err != nil {
		body["status"] = "Service Unavailable"
		body["error"] = err.Error()
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	writeJSON(w, http.StatusOK, body)
}
