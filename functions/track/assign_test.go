package track

import (
	"math"
	"math/rand/v2"
	"testing"
)

// bestFull is the least total cost of assigning every row a distinct column, n ≤ m.
func bestFull(cost []float64, n, m int) float64 {
	best := math.Inf(1)
	used := make([]bool, m)
	var rec func(i int, sum float64)
	rec = func(i int, sum float64) {
		if i == n {
			best = min(best, sum)
			return
		}
		for j := range m {
			if !used[j] {
				used[j] = true
				rec(i+1, sum+cost[i*m+j])
				used[j] = false
			}
		}
	}
	rec(0, 0)
	return best
}

// bestLimited is the least of Σ matched cost + limit × unmatched rows over all partial
// matchings that use only pairs costing at most limit.
func bestLimited(cost []float64, n, m int, limit float64) float64 {
	best := math.Inf(1)
	used := make([]bool, m)
	var rec func(i int, sum float64)
	rec = func(i int, sum float64) {
		if i == n {
			best = min(best, sum)
			return
		}
		rec(i+1, sum+limit)
		for j := range m {
			if !used[j] && cost[i*m+j] <= limit {
				used[j] = true
				rec(i+1, sum+cost[i*m+j])
				used[j] = false
			}
		}
	}
	rec(0, 0)
	return best
}

func TestHungarianAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for trial := range 2000 {
		n := 1 + rng.IntN(6)
		m := n + rng.IntN(3)
		cost := make([]float64, n*m)
		for i := range cost {
			if trial%3 == 0 {
				cost[i] = float64(rng.IntN(4)) // many ties
			} else {
				cost[i] = rng.Float64()*10 - 3
			}
		}
		match := hungarian(cost, n, m)
		used := map[int]bool{}
		sum := 0.0
		for i, j := range match {
			if j < 0 || j >= m || used[j] {
				t.Fatalf("trial %d: row %d got column %d (match %v)", trial, i, j, match)
			}
			used[j] = true
			sum += cost[i*m+j]
		}
		if want := bestFull(cost, n, m); math.Abs(sum-want) > 1e-9 {
			t.Fatalf("trial %d (%d×%d): total %v, brute force %v; cost %v match %v", trial, n, m, sum, want, cost, match)
		}
	}
}

func TestAssignAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 9))
	for trial := range 3000 {
		n, m := rng.IntN(7), rng.IntN(7)
		limit := 0.7
		cost := make([]float64, n*m)
		for i := range cost {
			switch r := rng.Float64(); {
			case r < 0.4:
				cost[i] = math.Inf(1) // another class
			case r < 0.5:
				cost[i] = 1 // no overlap
			default:
				cost[i] = rng.Float64()
			}
		}
		match := assign(cost, n, m, limit)
		if len(match) != n {
			t.Fatalf("trial %d: %d results for %d rows", trial, len(match), n)
		}
		used := map[int]bool{}
		sum := 0.0
		for i, j := range match {
			if j == -1 {
				sum += limit
				continue
			}
			if j < 0 || j >= m || used[j] || cost[i*m+j] > limit {
				t.Fatalf("trial %d: row %d got column %d (match %v, cost %v)", trial, i, j, match, cost)
			}
			used[j] = true
			sum += cost[i*m+j]
		}
		if want := bestLimited(cost, n, m, limit); math.Abs(sum-want) > 1e-9 {
			t.Fatalf("trial %d (%d×%d): objective %v, brute force %v; cost %v match %v", trial, n, m, sum, want, cost, match)
		}
	}
}

func TestAssignCases(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		name  string
		n, m  int
		cost  []float64
		limit float64
		want  []int
	}{
		{"no rows", 0, 3, nil, 0.7, []int{}},
		{"no columns", 2, 0, nil, 0.7, []int{-1, -1}},
		{"all above the limit", 2, 2, []float64{0.8, 0.9, 1, inf}, 0.7, []int{-1, -1}},
		{"at the limit matches", 1, 1, []float64{0.7}, 0.7, []int{0}},
		// Greedy by lowest cost takes (0,0) at 0.1 and leaves row 1 only a pair above
		// the limit; the optimum matches both, crosswise, for 0.4.
		{"greedy trap", 2, 2, []float64{0.1, 0.2, 0.2, 0.9}, 0.7, []int{1, 0}},
		{"more rows than columns", 3, 1, []float64{0.5, 0.2, 0.6}, 0.7, []int{-1, 0, -1}},
		{"separate clusters", 3, 3, []float64{0.1, inf, inf, inf, 0.3, 0.2, inf, 0.2, 0.6}, 0.7, []int{0, 2, 1}},
		{"NaN is never matched", 1, 2, []float64{math.NaN(), 0.5}, 0.7, []int{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := assign(tc.cost, tc.n, tc.m, tc.limit)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}
