// Package bench holds the load generator and the measurement runs that reproduce and
// extend the DiPLIP paper's evaluation. The product never imports it.
package bench
