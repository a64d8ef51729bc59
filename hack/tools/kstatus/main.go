// Command kstatus prints what kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status) computes for
// Kubernetes objects: the same status Flux's health checks, `kubectl wait`-style tooling and
// cli-utils' appliers derive from conditions and observedGeneration.
//
// It reads one object, or a JSON array of objects, as JSON or YAML on stdin and writes
// {"status": "...", "message": "..."} (or an array of them, in input order) as JSON on stdout.
// Built by hack/build-tools.sh kstatus; used by tests/cluster/test_gitops.py.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	// Decodes whole numbers as int64, as the API machinery does (kstatus reads generations as int64).
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func compute(obj map[string]interface{}) (result, error) {
	res, err := status.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		return result{}, err
	}
	return result{Status: res.Status.String(), Message: res.Message}, nil
}

func run(in io.Reader, out io.Writer) error {
	raw, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	doc, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return fmt.Errorf("stdin is neither JSON nor YAML: %w", err)
	}
	var many []map[string]interface{}
	if utiljson.Unmarshal(doc, &many) == nil {
		results := make([]result, 0, len(many))
		for i, obj := range many {
			r, err := compute(obj)
			if err != nil {
				return fmt.Errorf("object %d: %w", i, err)
			}
			results = append(results, r)
		}
		return json.NewEncoder(out).Encode(results)
	}
	var one map[string]interface{}
	if err := utiljson.Unmarshal(doc, &one); err != nil || one == nil {
		return fmt.Errorf("stdin holds no Kubernetes object (expected a mapping with apiVersion and kind, or an array of them)")
	}
	r, err := compute(one)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(r)
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
		os.Exit(1)
	}
}
