// refwebhook: a minimal mutating admission webhook (Go standard library only) used by
// bench/webhook.sh as a reference: the API server measures it under the same load as the
// operator's webhook, which shows how much of the measured latency is the API server's own
// on this machine. It sets spec.runtimeClassName (and spec.template.spec.runtimeClassName on
// workloads) to -class when absent, as the operator's webhook does for an opted-in object.
//
//	go build -o /tmp/refwebhook ./hack/refwebhook
//	refwebhook -addr 127.0.0.1:19460 -cert tls.crt -key tls.key -class kata-qemu
package main

import (
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
)

type review struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Request    *reviewRequest  `json:"request,omitempty"`
	Response   *reviewResponse `json:"response,omitempty"`
}

type reviewRequest struct {
	UID    string                `json:"uid"`
	Kind   struct{ Kind string } `json:"kind"`
	Object json.RawMessage       `json:"object"`
}

type reviewResponse struct {
	UID       string `json:"uid"`
	Allowed   bool   `json:"allowed"`
	PatchType string `json:"patchType,omitempty"`
	Patch     []byte `json:"patch,omitempty"`
}

type object struct {
	Spec struct {
		RuntimeClassName string `json:"runtimeClassName"`
		Template         struct {
			Spec struct {
				RuntimeClassName string `json:"runtimeClassName"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:19460", "listen address")
	cert := flag.String("cert", "tls.crt", "serving certificate (PEM)")
	key := flag.String("key", "tls.key", "serving key (PEM)")
	class := flag.String("class", "kata-qemu", "RuntimeClass to set")
	flag.Parse()
	http.HandleFunc("/mutate", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 3<<20))
		var rv review
		if err != nil || json.Unmarshal(body, &rv) != nil || rv.Request == nil {
			http.Error(w, "malformed AdmissionReview", http.StatusBadRequest)
			return
		}
		var o object
		_ = json.Unmarshal(rv.Request.Object, &o)
		resp := &reviewResponse{UID: rv.Request.UID, Allowed: true}
		path, cur := "/spec/runtimeClassName", o.Spec.RuntimeClassName
		if rv.Request.Kind.Kind != "Pod" {
			path, cur = "/spec/template/spec/runtimeClassName", o.Spec.Template.Spec.RuntimeClassName
		}
		if cur == "" {
			p, _ := json.Marshal([]map[string]string{{"op": "add", "path": path, "value": *class}})
			resp.PatchType, resp.Patch = "JSONPatch", p
		}
		out, _ := json.Marshal(review{APIVersion: rv.APIVersion, Kind: rv.Kind, Response: resp})
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
	log.Fatal(http.ListenAndServeTLS(*addr, *cert, *key, nil))
}
