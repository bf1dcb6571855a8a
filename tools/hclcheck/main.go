// Command hclcheck parses every .tf file of the Terraform modules in deploy/terraform with
// HashiCorp's HCL parser (the one Terraform itself uses) and checks the structure the deployment
// depends on: every module declares the variables the operator documentation names, references
// only what it declares, hands the cloud-init template exactly the variables the template uses
// (read from the template itself), opens IKE, NAT-T, ESP and WireGuard, turns the cloud's
// forwarding protection off, gives the vrouter a public and a private interface and can be an HA pair.
//
//	go run ./tools/hclcheck -dir deploy/terraform
//
// `terraform validate` would need the providers, which cannot be downloaded everywhere this runs.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// module is what one directory of .tf files declares.
type module struct {
	dir       string
	files     []*hclsyntax.Body
	variables map[string]*hclsyntax.Block
	resources map[string]*hclsyntax.Block // "type.name"
	data      map[string]*hclsyntax.Block
	locals    map[string]*hclsyntax.Attribute
	outputs   map[string]*hclsyntax.Block
}

type checker struct {
	problems []string
}

func (c *checker) fail(rng hcl.Range, format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf("%s:%d: %s", rng.Filename, rng.Start.Line, fmt.Sprintf(format, args...)))
}

func (c *checker) failf(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

func load(c *checker, dir string) *module {
	m := &module{dir: dir, variables: map[string]*hclsyntax.Block{}, resources: map[string]*hclsyntax.Block{},
		data: map[string]*hclsyntax.Block{}, locals: map[string]*hclsyntax.Attribute{}, outputs: map[string]*hclsyntax.Block{}}
	paths, _ := filepath.Glob(filepath.Join(dir, "*.tf"))
	sort.Strings(paths)
	if len(paths) == 0 {
		c.failf("%s: no .tf files", dir)
		return m
	}
	parser := hclparse.NewParser()
	for _, p := range paths {
		f, diags := parser.ParseHCLFile(p)
		for _, d := range diags {
			if d.Severity == hcl.DiagError {
				c.fail(*d.Subject, "%s: %s", d.Summary, d.Detail)
			}
		}
		if f == nil || diags.HasErrors() {
			continue
		}
		body := f.Body.(*hclsyntax.Body)
		m.files = append(m.files, body)
		for name, a := range body.Attributes {
			c.fail(a.SrcRange, "top-level attribute %q is not Terraform", name)
		}
		for _, b := range body.Blocks {
			key := strings.Join(b.Labels, ".")
			switch b.Type {
			case "variable":
				m.variables[key] = b
			case "resource":
				if _, dup := m.resources[key]; dup {
					c.fail(b.DefRange(), "resource %s declared twice", key)
				}
				m.resources[key] = b
			case "data":
				m.data[key] = b
			case "output":
				m.outputs[key] = b
			case "locals":
				for n, a := range b.Body.Attributes {
					m.locals[n] = a
				}
			case "terraform", "provider", "module", "moved", "import", "check", "removed":
			default:
				c.fail(b.DefRange(), "unknown top-level block %q", b.Type)
			}
		}
	}
	return m
}

// walk calls fn for every attribute of body and its nested blocks.
func walk(body *hclsyntax.Body, fn func(*hclsyntax.Attribute)) {
	for _, a := range body.Attributes {
		fn(a)
	}
	for _, b := range body.Blocks {
		walk(b.Body, fn)
	}
}

// literal is the value of a constant expression, or cty.NilVal.
func literal(e hclsyntax.Expression) cty.Value {
	v, diags := e.Value(nil)
	if diags.HasErrors() {
		return cty.NilVal
	}
	return v
}

func str(v cty.Value) string {
	if v == cty.NilVal || v.IsNull() || !v.IsKnown() {
		return ""
	}
	switch v.Type() {
	case cty.String:
		return v.AsString()
	case cty.Number:
		return v.AsBigFloat().Text('f', -1)
	case cty.Bool:
		if v.True() {
			return "true"
		}
		return "false"
	}
	return ""
}

func attr(b *hclsyntax.Block, name string) string {
	a, ok := b.Body.Attributes[name]
	if !ok {
		return ""
	}
	return str(literal(a.Expr))
}

func blocks(b *hclsyntax.Block, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, x := range b.Body.Blocks {
		if x.Type == typ {
			out = append(out, x)
		}
		// dynamic "typ" { content { ... } } counts as a block of that type.
		if x.Type == "dynamic" && len(x.Labels) == 1 && x.Labels[0] == typ {
			for _, c := range x.Body.Blocks {
				if c.Type == "content" {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

func refersTo(e hclsyntax.Expression, root, name string) bool {
	for _, t := range e.Variables() {
		if t.RootName() == root && len(t) > 1 {
			if a, ok := t[1].(hcl.TraverseAttr); ok && a.Name == name {
				return true
			}
		}
	}
	return false
}

// references checks that every var.X, local.X, data.T.N and T.N used is declared.
func references(c *checker, m *module) {
	builtin := map[string]bool{"var": true, "local": true, "data": true, "path": true, "count": true, "each": true, "self": true, "terraform": true, "module": true}
	for _, f := range m.files {
		walk(f, func(a *hclsyntax.Attribute) {
			for _, t := range a.Expr.Variables() {
				root := t.RootName()
				step := func(i int) string {
					if len(t) > i {
						if x, ok := t[i].(hcl.TraverseAttr); ok {
							return x.Name
						}
					}
					return ""
				}
				switch {
				case root == "var":
					if _, ok := m.variables[step(1)]; !ok {
						c.fail(t.SourceRange(), "var.%s is not declared", step(1))
					}
				case root == "local":
					if _, ok := m.locals[step(1)]; !ok {
						c.fail(t.SourceRange(), "local.%s is not declared", step(1))
					}
				case root == "data":
					if _, ok := m.data[step(1)+"."+step(2)]; !ok {
						c.fail(t.SourceRange(), "data.%s.%s is not declared", step(1), step(2))
					}
				case !builtin[root] && strings.Contains(root, "_"):
					if _, ok := m.resources[root+"."+step(1)]; !ok {
						c.fail(t.SourceRange(), "%s.%s is not declared", root, step(1))
					}
				}
			}
		})
	}
}

var placeholder = regexp.MustCompile(`\$\{([a-z_]+)\}`)

// templateVars are the ${name} placeholders of the cloud-init template.
func templateVars(path string) ([]string, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, m := range placeholder.FindAllStringSubmatch(string(text), -1) {
		seen[m[1]] = true
	}
	var out []string
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

// cloudInit finds the one templatefile() call and checks its path and variables against the template.
func cloudInit(c *checker, m *module) {
	var calls []*hclsyntax.FunctionCallExpr
	for _, f := range m.files {
		_ = hclsyntax.VisitAll(f, func(n hclsyntax.Node) hcl.Diagnostics {
			if fc, ok := n.(*hclsyntax.FunctionCallExpr); ok && fc.Name == "templatefile" {
				calls = append(calls, fc)
			}
			return nil
		})
	}
	if len(calls) != 1 {
		c.failf("%s: %d templatefile() calls, want exactly one (the cloud-init user-data)", m.dir, len(calls))
		return
	}
	call := calls[0]
	if len(call.Args) != 2 {
		c.fail(call.Range(), "templatefile() needs a path and a variables object")
		return
	}
	// The path is "${path.module}/..." : evaluate it with path.module = the module directory.
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"path": cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal(m.dir)})}}
	pv, diags := call.Args[0].Value(ctx)
	if diags.HasErrors() || pv.Type() != cty.String {
		c.fail(call.Args[0].Range(), "templatefile() path must be a string built from path.module")
		return
	}
	tpl := filepath.Clean(pv.AsString())
	if !strings.HasSuffix(tpl, filepath.Join("cloud-init", "user-data.yaml")) {
		c.fail(call.Args[0].Range(), "templatefile() renders %s, want the cloud-init user-data", tpl)
	}
	want, err := templateVars(tpl)
	if err != nil {
		c.fail(call.Args[0].Range(), "template: %v", err)
		return
	}
	obj, ok := call.Args[1].(*hclsyntax.ObjectConsExpr)
	if !ok {
		c.fail(call.Args[1].Range(), "templatefile() variables must be an object literal")
		return
	}
	var got []string
	for _, item := range obj.Items {
		k := str(literal(item.KeyExpr))
		if k == "" {
			if kk, ok := item.KeyExpr.(*hclsyntax.ObjectConsKeyExpr); ok {
				k = hcl.ExprAsKeyword(kk.Wrapped)
			}
		}
		got = append(got, k)
		if k == "token" && !refersTo(item.ValueExpr, "var", "registration_tokens") {
			c.fail(item.ValueExpr.Range(), "the template's token must come from var.registration_tokens")
		}
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		c.fail(call.Range(), "templatefile() passes [%s], the template uses [%s]", strings.Join(got, " "), strings.Join(want, " "))
	}
}

// common checks what every cloud's module must have.
func common(c *checker, m *module, instance string) {
	for _, name := range []string{"name", "controller_url", "registration_tokens", "release_url", "ha", "private_cidrs", "peer_cidrs", "admin_cidrs"} {
		if _, ok := m.variables[name]; !ok {
			c.failf("%s: variable %q is not declared", m.dir, name)
		}
	}
	for name, v := range m.variables {
		for _, need := range []string{"description", "type"} {
			if _, ok := v.Body.Attributes[need]; !ok {
				c.fail(v.DefRange(), "variable %q has no %s", name, need)
			}
		}
	}
	if v, ok := m.variables["registration_tokens"]; ok && attr(v, "sensitive") != "true" {
		c.fail(v.DefRange(), "variable registration_tokens must be sensitive")
	}
	if v, ok := m.variables["ha"]; ok && attr(v, "default") != "false" {
		c.fail(v.DefRange(), "variable ha must default to false (one vrouter unless asked)")
	}
	for _, o := range []string{"public_ips", "listen_addresses", "private_addresses"} {
		if _, ok := m.outputs[o]; !ok {
			c.failf("%s: output %q is missing", m.dir, o)
		}
	}
	vm, ok := m.resources[instance]
	if !ok {
		c.failf("%s: resource %s is missing", m.dir, instance)
		return
	}
	cnt, ok := vm.Body.Attributes["count"]
	haCount := ok && (refersTo(cnt.Expr, "var", "ha") || (refersTo(cnt.Expr, "local", "count") && m.locals["count"] != nil && refersTo(m.locals["count"].Expr, "var", "ha")))
	if !haCount {
		c.fail(vm.DefRange(), "%s: count must follow var.ha (the HA pair option)", instance)
	}
	cloudInit(c, m)
}

type rule struct{ proto, port string }

func hasRules(c *checker, where hcl.Range, have map[rule]bool, want []rule) {
	for _, r := range want {
		if !have[r] {
			c.fail(where, "no rule opens %s %s", r.proto, r.port)
		}
	}
}

func checkAWS(c *checker, m *module) {
	common(c, m, "aws_instance.vrouter")
	for _, side := range []string{"public", "private"} {
		nic, ok := m.resources["aws_network_interface."+side]
		if !ok {
			c.failf("%s: aws_network_interface.%s is missing", m.dir, side)
			continue
		}
		if attr(nic, "source_dest_check") != "false" {
			c.fail(nic.DefRange(), "aws_network_interface.%s: source_dest_check must be false", side)
		}
	}
	if vm, ok := m.resources["aws_instance.vrouter"]; ok {
		idx := map[string]bool{}
		for _, n := range blocks(vm, "network_interface") {
			idx[attr(n, "device_index")] = true
		}
		if !idx["0"] || !idx["1"] {
			c.fail(vm.DefRange(), "aws_instance.vrouter needs network interfaces at device_index 0 (public) and 1 (private)")
		}
		if _, ok := vm.Body.Attributes["user_data"]; !ok {
			c.fail(vm.DefRange(), "aws_instance.vrouter has no user_data")
		}
	}
	sg, ok := m.resources["aws_security_group.public"]
	if !ok {
		c.failf("%s: aws_security_group.public is missing", m.dir)
		return
	}
	have := map[rule]bool{}
	for _, in := range blocks(sg, "ingress") {
		from, to := attr(in, "from_port"), attr(in, "to_port")
		if from != to {
			c.fail(in.DefRange(), "ingress opens a port range %s-%s; the vrouter needs single ports", from, to)
		}
		have[rule{attr(in, "protocol"), from}] = true
	}
	hasRules(c, sg.DefRange(), have, []rule{{"udp", "500"}, {"udp", "4500"}, {"udp", "51820"}, {"50", "0"}})
}

func checkGCP(c *checker, m *module) {
	common(c, m, "google_compute_instance.vrouter")
	if vm, ok := m.resources["google_compute_instance.vrouter"]; ok {
		if attr(vm, "can_ip_forward") != "true" {
			c.fail(vm.DefRange(), "google_compute_instance.vrouter: can_ip_forward must be true")
		}
		nics := blocks(vm, "network_interface")
		if len(nics) != 2 {
			c.fail(vm.DefRange(), "google_compute_instance.vrouter has %d network interfaces, want 2 (public, private)", len(nics))
		} else if len(blocks(nics[0], "access_config")) != 1 || len(blocks(nics[1], "access_config")) != 0 {
			c.fail(vm.DefRange(), "only the first (public) network interface gets an external address")
		}
		md, ok := vm.Body.Attributes["metadata"]
		hasUserData := false
		if obj, isObj := md.Expr.(*hclsyntax.ObjectConsExpr); ok && isObj {
			for _, item := range obj.Items {
				if kk, ok := item.KeyExpr.(*hclsyntax.ObjectConsKeyExpr); ok && hcl.ExprAsKeyword(kk.Wrapped) == "" {
					if str(literal(kk.Wrapped)) == "user-data" {
						hasUserData = true
					}
				}
				if str(literal(item.KeyExpr)) == "user-data" {
					hasUserData = true
				}
			}
		}
		if !hasUserData {
			c.fail(vm.DefRange(), "google_compute_instance.vrouter: metadata has no user-data")
		}
	}
	fw, ok := m.resources["google_compute_firewall.tunnels"]
	if !ok {
		c.failf("%s: google_compute_firewall.tunnels is missing", m.dir)
		return
	}
	have := map[rule]bool{}
	for _, a := range blocks(fw, "allow") {
		proto := attr(a, "protocol")
		ports, ok := a.Body.Attributes["ports"]
		if !ok {
			have[rule{proto, "*"}] = true
			continue
		}
		v := literal(ports.Expr)
		if v == cty.NilVal || !v.CanIterateElements() {
			c.fail(ports.SrcRange, "ports must be a literal list")
			continue
		}
		for it := v.ElementIterator(); it.Next(); {
			_, p := it.Element()
			have[rule{proto, str(p)}] = true
		}
	}
	hasRules(c, fw.DefRange(), have, []rule{{"udp", "500"}, {"udp", "4500"}, {"udp", "51820"}, {"esp", "*"}})
}

func checkAzure(c *checker, m *module) {
	common(c, m, "azurerm_linux_virtual_machine.vrouter")
	for _, side := range []string{"public", "private"} {
		nic, ok := m.resources["azurerm_network_interface."+side]
		if !ok {
			c.failf("%s: azurerm_network_interface.%s is missing", m.dir, side)
			continue
		}
		if attr(nic, "ip_forwarding_enabled") != "true" {
			c.fail(nic.DefRange(), "azurerm_network_interface.%s: ip_forwarding_enabled must be true", side)
		}
		if _, ok := m.resources["azurerm_network_interface_security_group_association."+side]; !ok {
			c.failf("%s: the %s NIC has no network security group", m.dir, side)
		}
	}
	if vm, ok := m.resources["azurerm_linux_virtual_machine.vrouter"]; ok {
		ids, ok := vm.Body.Attributes["network_interface_ids"]
		tuple, isTuple := (*hclsyntax.TupleConsExpr)(nil), false
		if ok {
			tuple, isTuple = ids.Expr.(*hclsyntax.TupleConsExpr)
		}
		if !isTuple || len(tuple.Exprs) != 2 || !refersTo(tuple.Exprs[0], "azurerm_network_interface", "public") || !refersTo(tuple.Exprs[1], "azurerm_network_interface", "private") {
			c.fail(vm.DefRange(), "network_interface_ids must be [public, private] (the first is the primary NIC)")
		}
		if _, ok := vm.Body.Attributes["custom_data"]; !ok {
			c.fail(vm.DefRange(), "azurerm_linux_virtual_machine.vrouter has no custom_data")
		}
	}
	nsg, ok := m.resources["azurerm_network_security_group.public"]
	if !ok {
		c.failf("%s: azurerm_network_security_group.public is missing", m.dir)
		return
	}
	have := map[rule]bool{}
	for _, r := range blocks(nsg, "security_rule") {
		if attr(r, "direction") == "Inbound" && attr(r, "access") == "Allow" {
			have[rule{attr(r, "protocol"), attr(r, "destination_port_range")}] = true
		}
	}
	hasRules(c, nsg.DefRange(), have, []rule{{"Udp", "500"}, {"Udp", "4500"}, {"Udp", "51820"}, {"Esp", "*"}})
}

func main() {
	dir := flag.String("dir", "deploy/terraform", "directory holding one module per cloud")
	flag.Parse()
	c := &checker{}
	clouds := map[string]func(*checker, *module){"aws": checkAWS, "gcp": checkGCP, "azure": checkAzure}
	names := []string{"aws", "azure", "gcp"}
	files := 0
	for _, name := range names {
		m := load(c, filepath.Join(*dir, name))
		files += len(m.files)
		references(c, m)
		clouds[name](c, m)
	}
	if len(c.problems) > 0 {
		for _, p := range c.problems {
			fmt.Fprintln(os.Stderr, p)
		}
		fmt.Fprintf(os.Stderr, "hclcheck: %d problem(s)\n", len(c.problems))
		os.Exit(1)
	}
	fmt.Printf("hclcheck: %d files in %d modules (%s) parsed and checked\n", files, len(names), strings.Join(names, ", "))
}
