// faultproxy: a reverse proxy for e2e tests, between the controller and the local API server,
// that injects faults on command. Test tooling only; it never ships.
//
//	faultproxy -upstream https://127.0.0.1:6443 -ca ca.crt -ports-file F -log F
//
// It listens on two loopback ports chosen by the kernel and writes "PROXY_PORT ADMIN_PORT"
// to -ports-file. The proxy port speaks plain HTTP/1.1 and forwards everything, headers
// (the client's bearer token) included, to the upstream over TLS verified with -ca. The
// admin port takes JSON commands:
//
//	POST /rules   {"method":"PATCH","path":"regex","query":"regex","count":N,"status":409,
//	               "retryAfter":2,"bodyB64":"..."}  answer the next N requests whose method,
//	               URL path and (if given) raw query match, itself (count 0 or less = until
//	               cleared); without bodyB64 the body is a metav1.Status
//	POST /stall   {"path":"regex"}  silence every open streamed response whose "path?query"
//	               matches: the connection stays open, no byte follows; returns {"stalled":N}
//	POST /clear   drop all rules (stalled streams stay stalled)
//	GET  /rules   the rules with their remaining counts and hits
//
// Every request is logged to -log as one JSON line when it ends:
// {"ts":..., "method":..., "path":..., "query":..., "status":..., "injected":bool, "ms":...}.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"sync"
	"time"
)

type rule struct {
	Method     string `json:"method"`
	Path       string `json:"path"`
	Query      string `json:"query,omitempty"`
	Count      int    `json:"count"`
	Status     int    `json:"status"`
	RetryAfter int    `json:"retryAfter,omitempty"`
	BodyB64    string `json:"bodyB64,omitempty"`
	Hits       int    `json:"hits"`
	re         *regexp.Regexp
	qre        *regexp.Regexp
	body       []byte
}

type stream struct {
	target  string
	stalled bool
}

type proxy struct {
	mu      sync.Mutex
	rules   []*rule
	streams map[*stream]struct{}
	logMu   sync.Mutex
	logw    io.Writer
}

// match consumes one use of the first rule matching the request, if any.
func (p *proxy) match(r *http.Request) *rule {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ru := range p.rules {
		if ru.Method != "" && ru.Method != r.Method {
			continue
		}
		if !ru.re.MatchString(r.URL.Path) {
			continue
		}
		if ru.qre != nil && !ru.qre.MatchString(r.URL.RawQuery) {
			continue
		}
		if ru.Count > 0 && ru.Hits >= ru.Count {
			continue
		}
		ru.Hits++
		c := *ru
		return &c
	}
	return nil
}

func (p *proxy) logLine(r *http.Request, status int, injected bool, start time.Time) {
	line, _ := json.Marshal(map[string]any{
		"ts":       start.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
		"end":      time.Now().UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
		"method":   r.Method,
		"path":     r.URL.Path,
		"query":    r.URL.RawQuery,
		"status":   status,
		"injected": injected,
		"ms":       time.Since(start).Milliseconds(),
	})
	p.logMu.Lock()
	defer p.logMu.Unlock()
	p.logw.Write(append(line, '\n'))
}

// stallBody holds a streamed response: once its stream is stalled, no byte passes any more
// and Read blocks until the client goes away.
type stallBody struct {
	io.ReadCloser
	p   *proxy
	s   *stream
	ctx context.Context
}

func (b *stallBody) stalled() bool {
	b.p.mu.Lock()
	defer b.p.mu.Unlock()
	return b.s.stalled
}

func (b *stallBody) hold() (int, error) {
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}

func (b *stallBody) Read(buf []byte) (int, error) {
	if b.stalled() {
		return b.hold()
	}
	n, err := b.ReadCloser.Read(buf)
	if b.stalled() {
		return b.hold() // these bytes are dropped with the connection
	}
	return n, err
}

func (b *stallBody) Close() error {
	b.p.mu.Lock()
	delete(b.p.streams, b.s)
	b.p.mu.Unlock()
	return b.ReadCloser.Close()
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(c int) {
	w.status = c
	w.ResponseWriter.WriteHeader(c)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func statusBody(code int) []byte {
	reasons := map[int]string{409: "Conflict", 429: "TooManyRequests", 500: "InternalError",
		503: "ServiceUnavailable", 504: "Timeout", 410: "Expired"}
	b, _ := json.Marshal(map[string]any{
		"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
		"reason":  reasons[code],
		"message": fmt.Sprintf("injected by faultproxy: %d", code),
	})
	return b
}

func (p *proxy) serve(rp *httputil.ReverseProxy) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if ru := p.match(r); ru != nil {
			body := ru.body
			if body == nil {
				body = statusBody(ru.Status)
			}
			w.Header().Set("Content-Type", "application/json")
			if ru.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(ru.RetryAfter))
			}
			w.WriteHeader(ru.Status)
			w.Write(body)
			p.logLine(r, ru.Status, true, start)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: 200}
		rp.ServeHTTP(sw, r)
		p.logLine(r, sw.status, false, start)
	}
}

func (p *proxy) admin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /rules", func(w http.ResponseWriter, r *http.Request) {
		var ru rule
		if err := json.NewDecoder(r.Body).Decode(&ru); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		re, err := regexp.Compile(ru.Path)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		ru.re = re
		if ru.Query != "" {
			if ru.qre, err = regexp.Compile(ru.Query); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
		}
		ru.Hits = 0
		if ru.BodyB64 != "" {
			if ru.body, err = base64.StdEncoding.DecodeString(ru.BodyB64); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
		}
		if ru.Status == 0 {
			ru.Status = 200
		}
		p.mu.Lock()
		p.rules = append(p.rules, &ru)
		p.mu.Unlock()
		w.WriteHeader(201)
	})
	mux.HandleFunc("GET /rules", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		json.NewEncoder(w).Encode(p.rules)
	})
	mux.HandleFunc("POST /clear", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.rules = nil
		p.mu.Unlock()
	})
	mux.HandleFunc("POST /stall", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Path string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		re, err := regexp.Compile(req.Path)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		n := 0
		p.mu.Lock()
		for s := range p.streams {
			if !s.stalled && re.MatchString(s.target) {
				s.stalled = true
				n++
			}
		}
		p.mu.Unlock()
		fmt.Fprintf(w, "{\"stalled\":%d}\n", n)
	})
	return mux
}

func listen() (net.Listener, int) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	return l, l.Addr().(*net.TCPAddr).Port
}

func main() {
	upstream := flag.String("upstream", "", "API server URL (https://...)")
	caFile := flag.String("ca", "", "CA bundle that verifies the upstream")
	portsFile := flag.String("ports-file", "", "where to write \"PROXY_PORT ADMIN_PORT\"")
	logFile := flag.String("log", "", "request log (JSON lines); default stderr")
	flag.Parse()
	u, err := url.Parse(*upstream)
	if err != nil || u.Host == "" {
		log.Fatalf("bad -upstream %q", *upstream)
	}
	pool := x509.NewCertPool()
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			log.Fatalf("cannot load CA %s: %v", *caFile, err)
		}
	}
	p := &proxy{streams: map[*stream]struct{}{}, logw: os.Stderr}
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			log.Fatal(err)
		}
		p.logw = f
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = u.Host
		},
		Transport:     tr,
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			if resp.ContentLength >= 0 {
				return nil // not a stream
			}
			r := resp.Request
			target := r.URL.Path
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			s := &stream{target: target}
			p.mu.Lock()
			p.streams[s] = struct{}{}
			p.mu.Unlock()
			resp.Body = &stallBody{ReadCloser: resp.Body, p: p, s: s, ctx: r.Context()}
			return nil
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	pl, pport := listen()
	al, aport := listen()
	if *portsFile != "" {
		tmp := *portsFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d %d\n", pport, aport)), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(tmp, *portsFile); err != nil {
			log.Fatal(err)
		}
	}
	go func() { log.Fatal(http.Serve(al, p.admin())) }()
	log.Fatal(http.Serve(pl, p.serve(rp)))
}
