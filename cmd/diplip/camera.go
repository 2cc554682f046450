package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
	"github.com/diplip/diplip/ingest"
	"github.com/diplip/diplip/ingest/video"
)

// openVideo is the gateway's camera source: OpenCV's VideoCapture with FFmpeg.
var openVideo ingest.OpenSourceFunc = video.Open

func cameraCommand() *cli.Command {
	return &cli.Command{
		Name:  "camera",
		Usage: "manage pulled cameras: RTSP, HTTP MJPEG and video files the gateway reads into a stream",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "pull a camera into a stream; it reconnects by itself and survives gateway restarts",
				ArgsUsage: "STREAM",
				UsageText: "diplip camera add STREAM --id CAM --url URL [--fps N] [--loop]\n\n" +
					"Frames are encoded to JPEG once and sampled to --fps. A camera that drops is reconnected with\n" +
					"backoff (1 s doubling to 30 s); `diplip camera ls` shows its health.\n\n" +
					"Examples:\n   diplip camera add lobby --id door --url rtsp://10.0.0.7:554/stream1 --fps 5\n" +
					"   diplip camera add lobby --id sample --url /path/to/video.mp4 --loop",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "id", Required: true, Usage: "the camera's id (letters, digits, '_', '-')"},
					&cli.StringFlag{Name: "url", Required: true, Usage: "rtsp://, http(s):// or a video file"},
					&cli.Float64Flag{Name: "fps", Usage: "sample to this rate (0: every frame)"},
					&cli.BoolFlag{Name: "loop", Usage: "files: start again at the end"},
				}, globalFlags...),
				Action: gatewayAction("stream name", func(c *cli.Context, cl *apiclient.Client, stream string) error {
					cam, err := cl.AddCamera(c.Context, api.CameraRequest{ID: c.String("id"), Stream: stream, URL: c.String("url"),
						FPS: c.Float64("fps"), Loop: c.Bool("loop")})
					if err != nil {
						return err
					}
					return render(c, cam, func(w *tabwriter.Writer) {
						fmt.Fprintf(w, "camera %s pulls %s into stream %s\n", cam.ID, cam.URL, cam.Stream)
					})
				}),
			},
			{
				Name:      "ls",
				Usage:     "list pulled cameras with their health",
				UsageText: "diplip camera ls [-o json]\n\nExample:\n   diplip camera ls --gateway http://gw:8080",
				Flags:     globalFlags,
				Action: show((*apiclient.Client).Cameras, func(w *tabwriter.Writer, cams []api.CameraStatus) {
					fmt.Fprintln(w, "ID\tSTREAM\tCONNECTED\tFPS\tFRAMES\tDROPPED\tRECONNECTS\tLAST FRAME\tLAST ERROR\tURL")
					for _, s := range cams {
						last := "-"
						if !s.Health.LastFrame.IsZero() {
							last = time.Since(s.Health.LastFrame).Round(100*time.Millisecond).String() + " ago"
						}
						fmt.Fprintf(w, "%s\t%s\t%v\t%.1f\t%d\t%d\t%d\t%s\t%s\t%s\n", s.ID, s.Stream, s.Health.Connected, s.Health.FPS,
							s.Health.Frames, s.Health.Dropped, s.Health.Reconnects, last, s.Health.LastError, s.URL)
					}
				}),
			},
			{
				Name:      "rm",
				Usage:     "stop and forget a pulled camera",
				ArgsUsage: "ID",
				UsageText: "diplip camera rm ID\n\nExample:\n   diplip camera rm door",
				Flags:     globalFlags,
				Action: gatewayAction("camera id", func(c *cli.Context, cl *apiclient.Client, id string) error {
					if err := cl.RemoveCamera(c.Context, id); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "removed camera %s\n", id)
					return nil
				}),
			},
		},
	}
}
