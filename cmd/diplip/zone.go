package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/diplip/diplip/api"
	apiclient "github.com/diplip/diplip/api/client"
)

func zoneCommand() *cli.Command {
	return &cli.Command{
		Name:  "zone",
		Usage: "manage counting lines and areas of cameras, for deployments that track (fn deploy --track)",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a counting line or area to a camera of a stream",
				ArgsUsage: "STREAM",
				UsageText: "diplip zone add STREAM --camera ID --name NAME (--line X1,Y1,X2,Y2 | --polygon 'X,Y X,Y X,Y ...')\n\n" +
					"Coordinates are source-image pixels. A tracked object crossing a line is counted once, \"in\" when it\n" +
					"moves to the right-hand side of the line as drawn from its first point to its second (with y down:\n" +
					"a line drawn left to right counts walking down the image as in). An area counts entries, exits and\n" +
					"the objects inside. Results carry the events and running counts; /metrics has\n" +
					"diplip_zone_crossings_total and diplip_zone_occupancy.\n\n" +
					"Examples:\n   diplip zone add demo --camera vtest --name walkway --line 0,300,767,300\n" +
					"   diplip zone add demo --camera vtest --name door --polygon '100,100 300,100 300,400 100,400'",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "camera", Required: true, Usage: "the camera's id"},
					&cli.StringFlag{Name: "name", Required: true, Usage: "the zone's name (lowercase letters, digits, '-')"},
					&cli.StringFlag{Name: "line", Usage: "a counting line: X1,Y1,X2,Y2"},
					&cli.StringFlag{Name: "polygon", Usage: "a counting area: three or more 'X,Y' points separated by spaces"},
				}, globalFlags...),
				Action: gatewayAction("stream name", func(c *cli.Context, cl *apiclient.Client, stream string) error {
					var err error
					req := api.ZoneRequest{Stream: stream, Camera: c.String("camera"), Name: c.String("name")}
					switch line, poly := c.String("line"), c.String("polygon"); {
					case (line == "") == (poly == ""):
						return cli.Exit("give exactly one of --line X1,Y1,X2,Y2 or --polygon 'X,Y X,Y X,Y ...'", exitUsage)
					case line != "":
						if req.Line, err = parsePoints("--line", strings.Split(line, ","), 2); err != nil {
							return cli.Exit(err.Error(), exitUsage)
						}
					default:
						var coords []string
						for _, p := range strings.Fields(poly) {
							coords = append(coords, strings.Split(p, ",")...)
						}
						if req.Polygon, err = parsePoints("--polygon", coords, 3); err != nil {
							return cli.Exit(err.Error(), exitUsage)
						}
					}
					z, err := cl.AddZone(c.Context, req)
					if err != nil {
						return err
					}
					return render(c, z, func(w *tabwriter.Writer) {
						fmt.Fprintf(w, "zone %s on camera %s of stream %s\n", z.Name, z.Camera, z.Stream)
					})
				}),
			},
			{
				Name:      "ls",
				Usage:     "list zones",
				ArgsUsage: "[STREAM]",
				UsageText: "diplip zone ls [STREAM]\n\nExample:\n   diplip zone ls demo -o json",
				Flags:     globalFlags,
				Action: gatewayAction("", func(c *cli.Context, cl *apiclient.Client, _ string) error {
					if c.NArg() > 1 {
						return cli.Exit("want at most one stream name", exitUsage)
					}
					zs, err := cl.Zones(c.Context, c.Args().First())
					if err != nil {
						return err
					}
					return render(c, zs, func(w *tabwriter.Writer) {
						fmt.Fprintln(w, "STREAM\tCAMERA\tNAME\tKIND\tPOINTS")
						for _, z := range zs {
							kind, pts := "line", z.Line
							if len(z.Polygon) > 0 {
								kind, pts = "area", z.Polygon
							}
							var s []string
							for _, p := range pts {
								s = append(s, fmt.Sprintf("%g,%g", p.X, p.Y))
							}
							fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", z.Stream, z.Camera, z.Name, kind, strings.Join(s, " "))
						}
					})
				}),
			},
			{
				Name:      "rm",
				Usage:     "remove a zone (its counts go with it)",
				ArgsUsage: "STREAM",
				UsageText: "diplip zone rm STREAM --camera ID --name NAME\n\nExample:\n   diplip zone rm demo --camera vtest --name walkway",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "camera", Required: true, Usage: "the camera's id"},
					&cli.StringFlag{Name: "name", Required: true, Usage: "the zone's name"},
				}, globalFlags...),
				Action: gatewayAction("stream name", func(c *cli.Context, cl *apiclient.Client, stream string) error {
					if err := cl.RemoveZone(c.Context, stream, c.String("camera"), c.String("name")); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "zone %s removed\n", c.String("name"))
					return nil
				}),
			},
		},
	}
}

// parsePoints reads "x,y,x,y,..." coordinates into at least least points.
func parsePoints(flag string, coords []string, least int) ([]api.Point, error) {
	if len(coords)%2 != 0 || len(coords) < 2*least {
		return nil, fmt.Errorf("%s: want at least %d points as X,Y pairs, got %d numbers", flag, least, len(coords))
	}
	var pts []api.Point
	for i := 0; i < len(coords); i += 2 {
		x, err1 := strconv.ParseFloat(strings.TrimSpace(coords[i]), 64)
		y, err2 := strconv.ParseFloat(strings.TrimSpace(coords[i+1]), 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s: %q,%q is not a point of two numbers", flag, coords[i], coords[i+1])
		}
		pts = append(pts, api.Point{X: x, Y: y})
	}
	return pts, nil
}
