package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/onnx"
)

func fnInitCommand() *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "write a function directory (function.yaml, the model, labels) for an ONNX model, recognising its family",
		ArgsUsage: "MODEL.onnx",
		UsageText: "diplip fn init MODEL.onnx [--labels FILE] [-o DIR] [--name NAME] [--force]\n\n" +
			"Reads the model with ONNX Runtime (inputs, outputs, metadata), recognises its family (yolox, yolo,\n" +
			"gfl, boxes-scores, detr, classify, embed), says why, and writes DIR/function.yaml with every\n" +
			"parameter the shapes determine. Lines marked CHECK are what the model cannot say (channel order,\n" +
			"normalisation): the usual choice is written; check it. A model it cannot place is refused (exit 2):\n" +
			"then write a spec with decoder raw by hand.\n\n" +
			"Example:\n   diplip fn init nanodet_m_320.onnx --labels coco80.txt -o fn/nanodet\n" +
			"   diplip fn build fn/nanodet -t 127.0.0.1:8080/fn/nanodet:v1 --push",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "labels", Usage: "class names, one per line: copied into DIR (their count is checked against the model's classes)"},
			&cli.StringFlag{Name: "dir", Aliases: []string{"o"}, Usage: "the function directory to write (default: ./NAME)"},
			&cli.StringFlag{Name: "name", Usage: "the function's name (default: from the model's file name)"},
			&cli.BoolFlag{Name: "force", Usage: "overwrite DIR/function.yaml if it exists"},
		},
		Action: fnInit,
	}
}

// functionName makes a function name from a model file's name: "nanodet_m_320.onnx" →
// "nanodet-m-320".
func functionName(model string) string {
	n := strings.ToLower(strings.TrimSuffix(filepath.Base(model), filepath.Ext(model)))
	n = regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(n, "-")
	n = strings.Trim(n, "-")
	if len(n) > 63 {
		n = strings.Trim(n[:63], "-")
	}
	if n == "" {
		n = "fn"
	}
	return n
}

func fnInit(c *cli.Context) error {
	model, err := oneArg(c, "model file")
	if err != nil {
		return err
	}
	if _, err := os.Stat(model); err != nil {
		return cli.Exit(fmt.Sprintf("fn init: %v", err), exitUsage)
	}
	name := c.String("name")
	if name == "" {
		name = functionName(model)
	}
	dir := c.String("dir")
	if dir == "" {
		dir = name
	}
	var labels []string
	if f := c.String("labels"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return cli.Exit(fmt.Sprintf("--labels: %v", err), exitUsage)
		}
		labels = functions.ParseLabels(string(b))
	}
	info, err := onnx.Inspect(model)
	if err != nil {
		if strings.Contains(err.Error(), "not an ONNX model") {
			return cli.Exit("fn init: "+err.Error(), exitUsage)
		}
		return cli.Exit("fn init: "+err.Error(), exitFailed)
	}
	modelFile := filepath.Base(model)
	p, err := functions.Propose(info, name, modelFile, labels)
	if err != nil {
		if errors.Is(err, functions.ErrCannotPlace) || errors.Is(err, functions.ErrInvalidSpec) {
			return cli.Exit(fmt.Sprintf("fn init %s: %v", model, err), exitUsage)
		}
		return cli.Exit(fmt.Sprintf("fn init %s: %v", model, err), exitFailed)
	}
	specPath := filepath.Join(dir, functions.SpecFile)
	if _, err := os.Stat(specPath); err == nil && !c.Bool("force") {
		return cli.Exit(fmt.Sprintf("fn init: %s exists (--force overwrites it)", specPath), exitUsage)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	if err := copyInto(model, filepath.Join(dir, modelFile)); err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	switch {
	case c.String("labels") != "":
		p.Spec.Labels = filepath.Base(c.String("labels"))
		if err := copyInto(c.String("labels"), filepath.Join(dir, p.Spec.Labels)); err != nil {
			return cli.Exit(err.Error(), exitFailed)
		}
	case len(p.Labels) > 0:
		p.Spec.Labels = "labels.txt"
		if err := os.WriteFile(filepath.Join(dir, p.Spec.Labels), []byte(strings.Join(p.Labels, "\n")+"\n"), 0o644); err != nil {
			return cli.Exit(err.Error(), exitFailed)
		}
		p.Comments["labels"] = fmt.Sprintf("the %d names of the model's metadata", len(p.Labels))
	}
	if err := os.WriteFile(specPath, p.YAML(filepath.Base(model)), 0o644); err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "%s: family %s\n", model, p.Family)
	for _, why := range p.Why {
		fmt.Fprintf(w, "  because %s\n", why)
	}
	var checks []string
	for _, k := range sortedKeys(p.Comments) {
		if v := p.Comments[k]; strings.HasPrefix(v, "CHECK") {
			checks = append(checks, fmt.Sprintf("  %s: %s", k, strings.TrimSpace(strings.TrimPrefix(v, "CHECK:"))))
		}
	}
	fmt.Fprintf(w, "wrote %s\n", specPath)
	if len(checks) > 0 {
		fmt.Fprintf(w, "check (the model cannot say; the usual choice is written):\n%s\n", strings.Join(checks, "\n"))
	}
	fmt.Fprintf(w, "next: diplip fn build %s -t REGISTRY/fn/%s:v1 --push\n", dir, name)
	return nil
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// copyInto copies src to dst unless they are the same file.
func copyInto(src, dst string) error {
	if a, err := os.Stat(src); err == nil {
		if b, err := os.Stat(dst); err == nil && os.SameFile(a, b) {
			return nil
		}
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
