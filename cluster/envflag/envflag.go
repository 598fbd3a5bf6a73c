// Package envflag lets every duet binary take its flags from environment
// variables too, as Kubernetes manifests and containers like: the flag
// --kv-memory is also DUET_KV_MEMORY. A flag given on the command line
// wins over the environment.
package envflag

import (
	"flag"
	"fmt"
	"strings"
)

// Name is the environment variable for a flag: prefix + the flag name in
// upper case with dashes as underscores.
func Name(prefix, flagName string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Apply sets every flag of fs that was not set on the command line from
// its environment variable, if present; lookup is os.LookupEnv (passed in
// so that only main reads the environment). Call it after fs.Parse.
func Apply(fs *flag.FlagSet, prefix string, lookup func(string) (string, bool)) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] {
			return
		}
		v, ok := lookup(Name(prefix, f.Name))
		if !ok {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("environment %s=%q: %w", Name(prefix, f.Name), v, e)
		}
	})
	return err
}
