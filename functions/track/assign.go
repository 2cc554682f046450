package track

import "math"

// assign matches rows (tracks) to columns (detections) at the least total cost. cost is
// n×m, row-major. A pair whose cost is above limit is never matched, and leaving a row
// unmatched costs limit, so the solver minimises
//
//	Σ cost of matched pairs + limit × (unmatched rows)
//
// which is what ByteTrack's lap.lapjv(extend_cost=True, cost_limit=limit) minimises: its
// limit/2 for each unmatched row and column differs from this by a constant. A pair
// whose cost equals limit ties with leaving it unmatched; either answer is optimal.
//
// The result holds, for each row, its column or -1.
//
// Rows and columns that no feasible pair links never affect one another, so the problem
// is split into the connected components of the feasible pairs first: in a typical frame
// almost every track overlaps one detection, and the Hungarian solver only runs on the
// few crowded clusters.
func assign(cost []float64, n, m int, limit float64) []int {
	match := make([]int, n)
	for i := range match {
		match[i] = -1
	}
	if n == 0 || m == 0 {
		return match
	}
	feasible := func(i, j int) bool { return cost[i*m+j] <= limit }

	// Union-find over rows 0..n-1 and columns n..n+m-1.
	parent := make([]int, n+m)
	for i := range parent {
		parent[i] = i
	}
	find := func(x int) int {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	for i := range n {
		for j := range m {
			if feasible(i, j) {
				if a, b := find(i), find(n+j); a != b {
					parent[a] = b
				}
			}
		}
	}
	// Group rows and columns by component, numbered in order of their first row so that
	// the work is deterministic.
	comp := make([]int, n+m)
	for i := range comp {
		comp[i] = -1
	}
	var rowsOf, colsOf [][]int
	for i := range n {
		r := find(i)
		if comp[r] < 0 {
			comp[r] = len(rowsOf)
			rowsOf, colsOf = append(rowsOf, nil), append(colsOf, nil)
		}
		rowsOf[comp[r]] = append(rowsOf[comp[r]], i)
	}
	for j := range m {
		if c := comp[find(n+j)]; c >= 0 {
			colsOf[c] = append(colsOf[c], j)
		}
	}
	for c, rows := range rowsOf {
		cols := colsOf[c]
		switch {
		case len(cols) == 0: // a row with no feasible pair
		case len(rows) == 1 && len(cols) == 1:
			match[rows[0]] = cols[0]
		default:
			for k, col := range solveLimited(cost, m, rows, cols, limit) {
				match[rows[k]] = col
			}
		}
	}
	return match
}

// solveLimited runs the Hungarian solver on the rows×cols block of cost, extended with
// one private "unmatched" column per row at cost limit. It returns the column (an index
// into the full matrix) of each row of the block, or -1.
func solveLimited(cost []float64, m int, rows, cols []int, limit float64) []int {
	nr, nc := len(rows), len(cols)
	width := nc + nr
	// Any value above limit works as "forbidden": a forbidden pair can always be traded
	// for its row's private column, which nothing else can use, at a lower cost.
	forbidden := 2*math.Abs(limit) + 1e6
	sub := make([]float64, nr*width)
	for a, i := range rows {
		for b, j := range cols {
			c := cost[i*m+j]
			if !(c <= limit) {
				c = forbidden
			}
			sub[a*width+b] = c
		}
		for b := range nr {
			sub[a*width+nc+b] = forbidden
		}
		sub[a*width+nc+a] = limit
	}
	out := make([]int, nr)
	for a, b := range hungarian(sub, nr, width) {
		out[a] = -1
		if b < nc {
			out[a] = cols[b]
		}
	}
	return out
}

// hungarian solves the rectangular assignment problem: an n×m cost matrix (row-major,
// finite values, n ≤ m), each row assigned a distinct column, least total cost. It is
// the O(n²m) shortest-augmenting-path form with row and column potentials (Kuhn-Munkres
// as refined by Jonker and Volgenant), 1-based internally as in its usual statement.
// It returns the column of each row.
func hungarian(cost []float64, n, m int) []int {
	inf := math.Inf(1)
	u := make([]float64, n+1)    // row potentials
	v := make([]float64, m+1)    // column potentials
	p := make([]int, m+1)        // p[j]: the row assigned to column j, 0 for none
	way := make([]int, m+1)      // the previous column on the augmenting path
	minv := make([]float64, m+1) // the least reduced cost reaching column j
	used := make([]bool, m+1)
	for i := 1; i <= n; i++ {
		p[0] = i
		j0 := 0
		for j := range minv {
			minv[j], used[j] = inf, false
		}
		for p[j0] != 0 {
			used[j0] = true
			i0, delta, j1 := p[j0], inf, 0
			for j := 1; j <= m; j++ {
				if used[j] {
					continue
				}
				if cur := cost[(i0-1)*m+j-1] - u[i0] - v[j]; cur < minv[j] {
					minv[j], way[j] = cur, j0
				}
				if minv[j] < delta {
					delta, j1 = minv[j], j
				}
			}
			for j := 0; j <= m; j++ {
				if used[j] {
					u[p[j]] += delta
					v[j] -= delta
				} else {
					minv[j] -= delta
				}
			}
			j0 = j1
		}
		for j0 != 0 { // flip the augmenting path
			j1 := way[j0]
			p[j0] = p[j1]
			j0 = j1
		}
	}
	match := make([]int, n)
	for j := 1; j <= m; j++ {
		if p[j] != 0 {
			match[p[j]-1] = j - 1
		}
	}
	return match
}
