package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/functions"
	"github.com/diplip/diplip/functions/onnx"
	"github.com/diplip/diplip/internal/wire"
	"github.com/diplip/diplip/registry"
)

func fnCommand() *cli.Command {
	insecure := &cli.BoolFlag{Name: "insecure", Usage: "allow plain HTTP to a registry that is not on loopback"}
	store := &cli.StringFlag{Name: "store", Value: filepath.Join(defaultStateDir(), "images"), EnvVars: []string{"DIPLIP_IMAGE_STORE"},
		Usage: "where built images are kept until pushed (an OCI image layout)"}
	return &cli.Command{
		Name:  "fn",
		Usage: "build, publish and deploy functions (a model packaged as an OCI image)",
		Subcommands: []*cli.Command{
			fnInitCommand(),
			fnQuantizeCommand(),
			{
				Name:      "build",
				Usage:     "validate a function directory, check its model with ONNX Runtime, and pack it as an OCI image",
				ArgsUsage: "DIR",
				UsageText: "diplip fn build DIR -t REF [--push]\n\n" +
					"DIR holds function.yaml, the model and its labels file. The image is kept in --store\n" +
					"until pushed; the same files always give the same digest.\n\n" +
					"Example:\n   diplip fn build functions/examples/yolox-nano -t 127.0.0.1:8080/fn/yolox-nano:v1 --push",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "tag", Aliases: []string{"t"}, Required: true, Usage: "the image reference, e.g. 127.0.0.1:8080/fn/NAME:TAG"},
					&cli.BoolFlag{Name: "push", Usage: "push after building"},
					insecure, store,
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "table or json"},
				},
				Action: fnBuild,
			},
			{
				Name:      "push",
				Usage:     "push a built function image to its registry",
				ArgsUsage: "REF",
				UsageText: "diplip fn push REF\n\nCredentials come from the docker config ($DOCKER_CONFIG or ~/.docker/config.json).\n\n" +
					"Example:\n   diplip fn push 127.0.0.1:8080/fn/yolox-nano:v1",
				Flags:  []cli.Flag{insecure, store, &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "table or json"}},
				Action: fnPush,
			},
			{
				Name:      "inspect",
				Usage:     "show a function image's digest, size and spec (reads no layer)",
				ArgsUsage: "REF",
				UsageText: "diplip fn inspect REF [-o json]\n\nExample:\n   diplip fn inspect 127.0.0.1:8080/fn/yolox-nano:v1",
				Flags:     []cli.Flag{insecure, &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "table or json"}},
				Action:    fnInspect,
			},
			{
				Name:      "pull",
				Usage:     "pull a function image by digest into a cache directory, as a runner does",
				ArgsUsage: "REF",
				UsageText: "diplip fn pull REF [--cache DIR]\n\nA tag is resolved to its digest first; a digest already in the cache is not fetched again.\n\n" +
					"Example:\n   diplip fn pull 127.0.0.1:8080/fn/yolox-nano:v1",
				Flags: []cli.Flag{insecure,
					&cli.StringFlag{Name: "cache", Value: filepath.Join(defaultStateDir(), "cache"), Usage: "the content-addressed function cache"},
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "table or json"}},
				Action: fnPull,
			},
			{
				Name:      "deploy",
				Usage:     "run a function image on a stream (deploying again updates it in place)",
				ArgsUsage: "REF",
				UsageText: "diplip fn deploy REF --stream S [--min 0] [--max N] [--batch B] [--device cpu|cuda:0|any] [--policy live|replay] [--shadow]\n" +
					"       diplip fn deploy REF --stream S --after FUNCTION [--classes person,car] [--min-size PX] [--max-per-frame N] [--shadow]\n\n" +
					"The tag is resolved to a digest now; runners pull exactly that digest. With --shadow the image runs\n" +
					"next to the stream's primary deployment of the same function, in its own consumer group, with its\n" +
					"results on diplip.results.S.shadow; the primary is not touched (compare: diplip fn diff S --shadow).\n" +
					"With --after the image is a second stage: it reads FUNCTION's results on the stream, crops each selected\n" +
					"detection from its frame (read back by the offset the result names) and runs on the crops, writing one\n" +
					"enriched result per frame (FUNCTION's detections, the selected ones with an embedding or labels) to\n" +
					"diplip.results.S.after.FUNCTION.NAME; it scales on that input's lag like any deployment.\n" +
					"With --after and --shadow the image runs next to the live second stage NAME after FUNCTION (its selection,\n" +
					"policy and delivery unless given), in its own group on the same input, writing to\n" +
					"diplip.results.S.after.FUNCTION.NAME.shadow (compare: diplip fn diff S --shadow; promote: diplip fn promote S).\n" +
					"A stream has one shadow at a time, of a primary or of a second stage.\n\n" +
					"Example:\n   diplip fn deploy 127.0.0.1:8080/fn/yolox-nano:v1 --stream lobby --max 2\n" +
					"   diplip fn deploy 127.0.0.1:8080/fn/yolox-nano:v2 --stream lobby --shadow\n" +
					"   diplip fn deploy 127.0.0.1:8080/fn/yolox-nano:v1 --stream lobby --delivery exactly-once\n" +
					"   diplip fn deploy 127.0.0.1:8080/fn/person-reid:v1 --stream lobby --after yolox-nano --classes person --min-size 60\n" +
					"   diplip fn deploy 127.0.0.1:8080/fn/person-reid:v2 --stream lobby --after yolox-nano --shadow",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "stream", Required: true, Usage: "the stream to process"},
					&cli.IntFlag{Name: "min", Value: 0, Usage: "runners kept when the stream is idle (0: scale to zero)"},
					&cli.IntFlag{Name: "max", Value: 1, Usage: "most runners"},
					&cli.IntFlag{Name: "batch", Usage: "frames per inference run (default: the spec's batch.max)"},
					&cli.IntFlag{Name: "lanes", Usage: "inferences each runner runs at once (default: the spec's resources.lanes, else the runner's --lanes)"},
					&cli.BoolFlag{Name: "track", Usage: "track objects across each camera's frames: track ids, and counts on the zones of `diplip zone add` (the spec's track: section sets parameters)"},
					&cli.StringFlag{Name: "device", Usage: "cpu, cuda:N or any (default: the spec's resources.device)"},
					&cli.StringFlag{Name: "policy", Value: "live", Usage: "live (skip frames older than --max-age) or replay (process all)"},
					&cli.DurationFlag{Name: "max-age", Usage: "live policy: oldest frame worth processing (default 5s)"},
					&cli.TimestampFlag{Name: "from", Layout: time.RFC3339, Usage: "replay policy: start at the first frame stored at or after this time (RFC 3339); default: the earliest retained"},
					&cli.BoolFlag{Name: "shadow", Usage: "run next to the stream's primary deployment of the same function (with --after: its live second stage), without touching it"},
					&cli.StringFlag{Name: "after", Usage: "run as a second stage on the crops of the detections of this function, deployed on the stream"},
					&cli.StringSliceFlag{Name: "classes", Usage: "--after: only detections with these labels of the first stage's labels file (comma-separated; default all)"},
					&cli.IntFlag{Name: "min-size", Usage: "--after: skip detections whose box is less than this many pixels high"},
					&cli.IntFlag{Name: "max-per-frame", Usage: "--after: at most this many detections per frame, the highest scoring first (default all)"},
					&cli.StringFlag{Name: "delivery", Usage: "at-least-once (default: after a crash some results are written twice) or exactly-once " +
						"(results, tracker state and offsets in one Kafka transaction per partition; readers see each result once; " +
						"needs a cluster that runs transactions; a shadow takes its primary's)"},
					insecure,
				}, globalFlags...),
				Action: gatewayAction("image reference", fnDeploy),
			},
			{
				Name:      "undeploy",
				Usage:     "stop running a function on a stream",
				ArgsUsage: "NAME",
				UsageText: "diplip fn undeploy NAME --stream S [--shadow | --after FUNCTION | --cascade]\n\nWith --shadow only the shadow goes; the primary stays.\n" +
					"With --after only the second stage NAME that runs after FUNCTION goes. A function that second stages run\n" +
					"after is not undeployed (409) unless --cascade, which removes them too. A second stage (or a second stage's\n" +
					"shadow) goes with its results topic, diplip.results.S.after.FUNCTION.NAME[.shadow]: its results are deleted.\n\n" +
					"Example:\n   diplip fn undeploy yolox-nano --stream lobby",
				Flags: append([]cli.Flag{&cli.StringFlag{Name: "stream", Required: true},
					&cli.BoolFlag{Name: "shadow", Usage: "remove only the function's shadow on the stream"},
					&cli.StringFlag{Name: "after", Usage: "remove only the second stage NAME that runs after this function"},
					&cli.BoolFlag{Name: "cascade", Usage: "remove the second stages that run after the function too"}}, globalFlags...),
				Action: gatewayAction("function name", fnUndeploy),
			},
			{
				Name:      "diff",
				Usage:     "compare a shadow's or a replay's results with the primary's, frame by frame",
				ArgsUsage: "STREAM",
				UsageText: "diplip fn diff STREAM (--shadow | --replay NAME) [--iou 0.5] [-o json]\n\n" +
					"Frames are matched by camera and sequence; detections by class and IoU ≥ --iou. Per class:\n" +
					"precision, recall and F1 of the candidate against the primary, mean IoU of matches, count deltas;\n" +
					"frames only one side has; p50/p99 latency of each side.\n" +
					"A second stage's shadow or replay (--after) is compared with the live second stage: on the detections\n" +
					"both sides have, the mean and p10 cosine similarity of their embeddings and how many got one on each\n" +
					"side (an embed function), or the top-1 label agreement (a classify function).\n\n" +
					"Example:\n   diplip fn diff demo --replay v2-morning",
				Flags: append([]cli.Flag{
					&cli.BoolFlag{Name: "shadow", Usage: "compare the stream's shadow deployment"},
					&cli.StringFlag{Name: "replay", Usage: "compare this replay"},
				}, globalFlags...),
				Action: gatewayAction("stream name", fnDiff),
			},
			{
				Name:      "promote",
				Usage:     "make a stream's shadow its primary (a rolling update to the shadow's digest)",
				ArgsUsage: "STREAM",
				UsageText: "diplip fn promote STREAM\n\nThe old digest's results stay on the stream's results topic. The shadow of a second stage becomes\n" +
					"the live second stage (a rolling update to its digest, batch, lanes and selection); its results topic goes.\n\n" +
					"Example:\n   diplip fn promote lobby",
				Flags:  globalFlags,
				Action: gatewayAction("stream name", fnPromote),
			},
			{
				Name:      "ls",
				Usage:     "list the functions the gateway knows and where they are deployed",
				UsageText: "diplip fn ls [-o json]\n\nExample:\n   diplip fn ls -o json | jq '.[].health'",
				Flags:     globalFlags,
				Action:    gatewayAction("", fnList),
			},
			{
				Name:      "rm",
				Usage:     "forget a function (it must not be deployed; its image stays in the registry)",
				ArgsUsage: "NAME",
				UsageText: "diplip fn rm NAME\n\nExample:\n   diplip fn rm yolox-nano",
				Flags:     globalFlags,
				Action:    gatewayAction("function name", fnRemove),
			},
		},
	}
}

// refArg reads the one image reference argument of a command with -o.
func refArg(c *cli.Context) (name.Reference, error) {
	if err := checkOutput(c); err != nil {
		return nil, err
	}
	arg, err := oneArg(c, "image reference")
	if err != nil {
		return nil, err
	}
	return parseRef(c, arg)
}

func parseRef(c *cli.Context, s string) (name.Reference, error) {
	ref, err := registry.ParseReference(s, c.Bool("insecure"))
	if err != nil {
		return nil, cli.Exit(err.Error(), exitUsage)
	}
	return ref, nil
}

// checkWithONNXRuntime loads the model with ONNX Runtime and checks it against the spec,
// and the labels file against the class count the outputs give.
func checkWithONNXRuntime(dir string, spec *functions.Spec) error {
	fn, err := onnx.Open(dir, spec, onnx.Options{IntraOpThreads: 1})
	if err != nil {
		return err
	}
	if err := fn.Close(); err != nil {
		return err
	}
	if spec.Labels == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, spec.Labels))
	if err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	_, outs, err := onnx.ModelTensors(filepath.Join(dir, spec.Model))
	if err != nil {
		return err
	}
	return functions.CheckLabels(spec, spec.NamedOutputs(outs), functions.ParseLabels(string(b)))
}

type builtImage struct {
	Ref    string          `json:"ref"`
	Digest string          `json:"digest"`
	Pushed bool            `json:"pushed"`
	Spec   *functions.Spec `json:"spec"`
}

func fnBuild(c *cli.Context) error {
	if err := checkOutput(c); err != nil {
		return err
	}
	dir, err := oneArg(c, "function directory")
	if err != nil {
		return err
	}
	ref, err := parseRef(c, c.String("tag"))
	if err != nil {
		return err
	}
	img, spec, err := registry.Build(dir, checkWithONNXRuntime)
	if err != nil {
		if errors.Is(err, functions.ErrInvalidSpec) {
			return cli.Exit(err.Error(), exitUsage)
		}
		return cli.Exit(err.Error(), exitFailed)
	}
	st := &registry.Store{Dir: c.String("store")}
	if err := st.Put(ref, img); err != nil {
		return err
	}
	d, _ := img.Digest()
	out := builtImage{Ref: ref.String(), Digest: ref.Context().Digest(d.String()).String(), Spec: spec}
	if c.Bool("push") {
		if _, err := push(c, img, ref); err != nil {
			return err
		}
		out.Pushed = true
	}
	return render(c, out, func(w *tabwriter.Writer) {
		verb := "built"
		if out.Pushed {
			verb = "built and pushed"
		}
		fmt.Fprintf(w, "%s %s\n%s\n", verb, out.Ref, out.Digest)
	})
}

func fnPush(c *cli.Context) error {
	ref, err := refArg(c)
	if err != nil {
		return err
	}
	img, err := (&registry.Store{Dir: c.String("store")}).Get(ref)
	if errors.Is(err, registry.ErrNotBuilt) {
		return cli.Exit(err.Error(), exitNotFound)
	}
	if err != nil {
		return err
	}
	pinned, err := push(c, img, ref)
	if err != nil {
		return err
	}
	return render(c, map[string]string{"ref": ref.String(), "digest": pinned.String()}, func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "pushed %s\n%s\n", ref, pinned)
	})
}

// push pushes img, with a progress bar on a terminal.
func push(c *cli.Context, img v1.Image, ref name.Reference) (name.Digest, error) {
	var progress chan v1.Update
	done := make(chan struct{})
	if interactive() {
		progress = make(chan v1.Update, 16)
		go func() {
			defer close(done)
			var bar *progressbar.ProgressBar
			for u := range progress {
				if bar == nil && u.Total > 0 {
					bar = progressbar.DefaultBytes(u.Total, "pushing "+ref.Context().RepositoryStr())
				}
				if bar != nil {
					_ = bar.Set64(u.Complete)
				}
			}
			if bar != nil {
				_ = bar.Finish()
				fmt.Fprintln(os.Stderr)
			}
		}()
	} else {
		close(done)
	}
	pinned, err := registry.Push(c.Context, img, ref, progress)
	<-done
	if err != nil {
		return pinned, cli.Exit(err.Error(), exitFailed)
	}
	return pinned, nil
}

type inspected struct {
	Ref       string            `json:"ref"`
	Digest    string            `json:"digest"`
	Size      int64             `json:"size"`
	Spec      *functions.Spec   `json:"spec"`
	Quantized map[string]string `json:"quantized,omitempty"` // from, stream, window, method, agreement (fn quantize)
}

func fnInspect(c *cli.Context) error {
	ref, err := refArg(c)
	if err != nil {
		return err
	}
	info, err := registry.Inspect(c.Context, ref)
	if err != nil {
		return cli.Exit(fmt.Sprintf("inspect %s: %v", ref, err), exitFailed)
	}
	spec := info.Spec
	out := inspected{Ref: ref.String(), Digest: info.Digest.String(), Size: info.Size, Spec: spec, Quantized: info.Quantized}
	return render(c, out, func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "ref\t%s\ndigest\t%s\nsize\t%s\nfunction\t%s (%s, %s)\n", out.Ref, out.Digest, humanBytes(out.Size), spec.Name, spec.Runtime, spec.Model)
		fmt.Fprintf(w, "input\t%s %dx%d %s %s %s\n", spec.Input.Tensor, spec.Input.Width, spec.Input.Height, spec.Input.Layout, spec.Input.Channels, spec.Input.Resize)
		switch o := spec.Output; o.Decoder {
		case "classify":
			fmt.Fprintf(w, "output\t%s %v (top %d, %s, score ≥ %.2f)\n", o.Decoder, o.Tensors, o.TopK, o.Activation, *o.ScoreThreshold)
		case "embed", "raw":
			fmt.Fprintf(w, "output\t%s %v\n", o.Decoder, o.Tensors)
		default:
			fmt.Fprintf(w, "output\t%s %v (score ≥ %.2f, nms %.2f)\n", o.Decoder, o.Tensors, *o.ScoreThreshold, *o.NMSThreshold)
		}
		fmt.Fprintf(w, "batch\tmax %d, max delay %v\nresources\t%s, %d MB\n", spec.Batch.Max, time.Duration(spec.Batch.MaxDelay), spec.Resources.Device, spec.Resources.MemoryMB)
		if q := out.Quantized; q != nil {
			fmt.Fprintf(w, "quantized\tINT8 from %s, calibrated on stream %s (%s), %s\n", q["from"], q["stream"], q["window"], q["method"])
			if a := q["agreement"]; a != "" {
				fmt.Fprintf(w, "agreement\twith FP32: %s\n", a)
			}
		}
	})
}

func fnPull(c *cli.Context) error {
	ref, err := refArg(c)
	if err != nil {
		return err
	}
	pinned, err := registry.Resolve(c.Context, ref)
	if err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	cache := &registry.Cache{Dir: c.String("cache")}
	dir, spec, err := cache.Pull(c.Context, pinned)
	if err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	return render(c, map[string]string{"digest": pinned.String(), "dir": dir, "function": spec.Name}, func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "%s\n%s\n", pinned, dir)
	})
}

func fnDeploy(c *cli.Context, cl *apiclient.Client, arg string) error {
	req := api.DeployRequest{Ref: arg, Insecure: c.Bool("insecure"), Stream: c.String("stream"), Min: c.Int("min"),
		Max: c.Int("max"), Batch: c.Int("batch"), Lanes: c.Int("lanes"), Track: c.Bool("track"), Device: c.String("device"), Policy: c.String("policy"),
		Shadow: c.Bool("shadow"), Delivery: c.String("delivery"), After: c.String("after"), Classes: c.StringSlice("classes"),
		MinSize: c.Int("min-size"), MaxPerFrame: c.Int("max-per-frame")}
	if req.Shadow && !c.IsSet("policy") {
		req.Policy = "" // the primary's
	}
	if d := c.Duration("max-age"); d > 0 {
		req.MaxAge = d.String()
	}
	if t := c.Timestamp("from"); t != nil {
		req.From = t.UTC().Format(time.RFC3339)
	}
	d, err := cl.Deploy(c.Context, req)
	if err != nil {
		return err
	}
	return render(c, d, func(w *tabwriter.Writer) {
		verb := "deployed"
		if d.Role == "shadow" {
			verb = "deployed as shadow:"
		}
		if d.Role == "after" {
			verb = "deployed as a second stage after " + d.After + ":"
		}
		if d.Role == "shadow" && d.After != "" {
			verb = "deployed as the shadow of the second stage after " + d.After + ":"
		}
		if d.Generation > 1 {
			verb = fmt.Sprintf("updated (generation %d)", d.Generation)
		}
		fmt.Fprintf(w, "%s %s on stream %s\n%s\nrunners %d..%d, batch %d, device %s, policy %s, delivery %s\n",
			verb, d.Function, d.Stream, d.Digest, d.Min, d.Max, d.Batch, d.Device, d.Policy, d.Delivery)
	})
}

func fnUndeploy(c *cli.Context, cl *apiclient.Client, fn string) error {
	if c.Bool("shadow") {
		if err := cl.UndeployShadow(c.Context, fn, c.String("stream")); err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "undeployed the shadow of %s from stream %s\n", fn, c.String("stream"))
		return nil
	}
	undeploy, what := cl.Undeploy, fn
	switch {
	case c.String("after") != "":
		after := c.String("after")
		undeploy = func(ctx context.Context, fn, st string) error { return cl.UndeployAfter(ctx, fn, st, after) }
		what = fn + " (after " + after + ")"
	case c.Bool("cascade"):
		undeploy, what = cl.UndeployCascade, fn+" and the second stages after it"
	}
	if err := undeploy(c.Context, fn, c.String("stream")); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "undeployed %s from stream %s\n", what, c.String("stream"))
	return nil
}

func fnDiff(c *cli.Context, cl *apiclient.Client, stream string) error {
	if c.Bool("shadow") == (c.String("replay") != "") {
		return cli.Exit("want one of --shadow or --replay NAME", exitUsage)
	}
	d, err := cl.Diff(c.Context, stream, c.String("replay"))
	if err != nil {
		return err
	}
	return render(c, d, func(w *tabwriter.Writer) {
		cand, base := d.Candidate.Kind, "primary"
		if d.Candidate.Name != "" {
			cand += " " + d.Candidate.Name
		}
		if d.Chain != nil {
			base = "live second stage " + d.Chain.First + " →"
		}
		fmt.Fprintf(w, "%s on %s: %s vs %s %s (IoU ≥ %.2f)\n", cand, d.Stream, shortDigest(d.Candidate.Digests[0]), base,
			strings.Join(mapSlice(d.Primary.Digests, shortDigest), ","), d.IoU)
		fmt.Fprintf(w, "frames\t%d compared, %d only primary, %d only %s\n", d.Frames, d.OnlyPrimary, d.OnlyCandidate, d.Candidate.Kind)
		fmt.Fprintf(w, "latency\tprimary p50 %.1f ms p99 %.1f ms; %s p50 %.1f ms p99 %.1f ms\n", d.Primary.LatencyP50Ms, d.Primary.LatencyP99Ms,
			d.Candidate.Kind, d.Candidate.LatencyP50Ms, d.Candidate.LatencyP99Ms)
		if ch := d.Chain; ch != nil {
			fmt.Fprintf(w, "detections\t%d paired\n", ch.Detections)
			if ch.PrimaryEmbedded+ch.CandidateEmbedded > 0 {
				fmt.Fprintf(w, "embeddings\t%d primary, %d %s; %d pairs: cosine mean %.4f, p10 %.4f\n", ch.PrimaryEmbedded, ch.CandidateEmbedded,
					d.Candidate.Kind, ch.Embedded, ch.CosineMean, ch.CosineP10)
			}
			if ch.PrimaryLabeled+ch.CandidateLabeled > 0 {
				fmt.Fprintf(w, "labels\t%d primary, %d %s; %d pairs: top-1 agreement %.3f\n", ch.PrimaryLabeled, ch.CandidateLabeled,
					d.Candidate.Kind, ch.Labeled, ch.Top1Agreement)
			}
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "CLASS\tPRIMARY\tCANDIDATE\tDELTA\tMATCHED\tPRECISION\tRECALL\tF1\tMEAN IOU")
		for _, cl := range append(d.Classes, d.Overall) {
			fmt.Fprintf(w, "%s\t%d\t%d\t%+d\t%d\t%.3f\t%.3f\t%.3f\t%.3f\n", cl.Label, cl.Primary, cl.Candidate, cl.CountDelta,
				cl.Matched, cl.Precision, cl.Recall, cl.F1, cl.MeanIoU)
		}
	})
}

func mapSlice(in []string, f func(string) string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = f(s)
	}
	return out
}

func fnPromote(c *cli.Context, cl *apiclient.Client, stream string) error {
	d, err := cl.Promote(c.Context, stream)
	if err != nil {
		return err
	}
	return render(c, d, func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "promoted: %s on stream %s now runs %s (generation %d, a rolling update)\n", d.Function, d.Stream, d.Digest, d.Generation)
	})
}

type fnRow struct {
	api.Function
	Deployments []api.Deployment `json:"deployments"`
	Health      string           `json:"health"` // ok, or why it keeps failing
}

func fnList(c *cli.Context, cl *apiclient.Client, _ string) error {
	fns, err := cl.Functions(c.Context)
	if err != nil {
		return err
	}
	deps, err := cl.Deployments(c.Context)
	if err != nil {
		return err
	}
	res, err := cl.Resources(c.Context)
	if err != nil {
		return err
	}
	health := map[string]string{}
	for _, s := range res.Deployments {
		if s.Unhealthy != "" {
			health[s.Key] = s.Unhealthy
		}
	}
	rows := []fnRow{}
	for _, f := range fns {
		r := fnRow{Function: f, Deployments: []api.Deployment{}, Health: "ok"}
		for _, d := range deps {
			if d.Function == f.Name {
				r.Deployments = append(r.Deployments, d)
				if why, bad := health[d.Key()]; bad {
					r.Health = "unhealthy on " + d.Stream + ": " + why
				}
			}
		}
		rows = append(rows, r)
	}
	return render(c, rows, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NAME\tDIGEST\tSIZE\tDEPLOYED ON\tHEALTH")
		for _, r := range rows {
			var on []string
			for _, d := range r.Deployments {
				switch d.Role {
				case "shadow":
					what := "shadow"
					if d.After != "" {
						what = d.After + " → shadow"
					}
					on = append(on, fmt.Sprintf("%s (%s %s, %d..%d)", d.Stream, what, shortDigest(d.Digest), d.Min, d.Max))
				case "replay":
					on = append(on, fmt.Sprintf("%s (replay %s)", d.Stream, d.Replay))
				case "after":
					on = append(on, fmt.Sprintf("%s (%s → %s, %d..%d)", d.Stream, d.After, d.Function, d.Min, d.Max))
				default:
					mode := d.Policy
					if d.Delivery == string(wire.ExactlyOnce) {
						mode += ", exactly-once"
					}
					on = append(on, fmt.Sprintf("%s (%d..%d, %s)", d.Stream, d.Min, d.Max, mode))
				}
			}
			digest := r.Digest
			if i := strings.LastIndex(digest, "@sha256:"); i >= 0 && len(digest) > i+20 {
				digest = digest[i+1 : i+20]
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Name, digest, humanBytes(r.Size), strings.Join(on, ", "), r.Health)
		}
	})
}

func fnRemove(c *cli.Context, cl *apiclient.Client, fn string) error {
	if err := cl.DeleteFunction(c.Context, fn); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "removed function %s\n", fn)
	return nil
}
