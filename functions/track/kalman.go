package track

import (
	"math"

	"github.com/diplip/diplip/functions"
)

// The constant-velocity box model of SORT, DeepSORT and ByteTrack. The state is
//
//	cx, cy, a, h, vcx, vcy, va, vh
//
// the box centre, its aspect ratio a = width/height, its height and their velocities
// per frame. Boxes are measured as (cx, cy, a, h). The noise is proportional to the
// box height, so a filter tuned on small far-away people behaves the same on large near
// ones; the weights are ByteTrack's, tuned for about 30 frames per second.
const (
	stdWeightPosition = 1.0 / 20
	stdWeightVelocity = 1.0 / 160
)

const (
	dimState = 8
	dimMeas  = 4
)

// kalman is one track's filter: the mean of its state and the covariance.
type kalman struct {
	Mean [dimState]float64           `json:"mean"`
	Cov  [dimState][dimState]float64 `json:"cov"`
}

// measure converts a box into the measurement (cx, cy, a, h).
func measure(b functions.Box) [dimMeas]float64 {
	w, h := float64(b.X2-b.X1), float64(b.Y2-b.Y1)
	a := 0.0
	if h > 0 {
		a = w / h
	}
	return [dimMeas]float64{float64(b.X1+b.X2) / 2, float64(b.Y1+b.Y2) / 2, a, h}
}

// box is the filter's current box estimate.
func (k *kalman) box() functions.Box {
	cx, cy, a, h := k.Mean[0], k.Mean[1], k.Mean[2], k.Mean[3]
	w := a * h
	return functions.Box{
		X1: float32(cx - w/2), Y1: float32(cy - h/2),
		X2: float32(cx + w/2), Y2: float32(cy + h/2),
	}
}

// newKalman starts a filter at a measured box with zero velocity and a velocity
// uncertainty large enough for the first matches to set it.
func newKalman(z [dimMeas]float64) kalman {
	var k kalman
	copy(k.Mean[:dimMeas], z[:])
	h := z[3]
	std := [dimState]float64{
		2 * stdWeightPosition * h, 2 * stdWeightPosition * h, 1e-2, 2 * stdWeightPosition * h,
		10 * stdWeightVelocity * h, 10 * stdWeightVelocity * h, 1e-5, 10 * stdWeightVelocity * h,
	}
	for i, s := range std {
		k.Cov[i][i] = s * s
	}
	return k
}

// predict advances the filter by one frame: x = F x, P = F P Fᵀ + Q, where F adds each
// velocity to its position.
func (k *kalman) predict() {
	h := k.Mean[3]
	for i := range dimMeas {
		k.Mean[i] += k.Mean[i+dimMeas]
	}
	// F P: row i (a position) gains row i+4 (its velocity).
	for i := range dimMeas {
		for j := range dimState {
			k.Cov[i][j] += k.Cov[i+dimMeas][j]
		}
	}
	// (F P) Fᵀ: likewise for the columns.
	for i := range dimState {
		for j := range dimMeas {
			k.Cov[i][j] += k.Cov[i][j+dimMeas]
		}
	}
	std := [dimState]float64{
		stdWeightPosition * h, stdWeightPosition * h, 1e-2, stdWeightPosition * h,
		stdWeightVelocity * h, stdWeightVelocity * h, 1e-5, stdWeightVelocity * h,
	}
	for i, s := range std {
		k.Cov[i][i] += s * s
	}
}

// update corrects the filter with a measurement. It reports false, leaving the filter
// as it was, when the innovation covariance is not positive definite (only a corrupt
// restored state can get there); the caller then restarts the filter at the measurement.
func (k *kalman) update(z [dimMeas]float64) bool {
	h := k.Mean[3]
	r := [dimMeas]float64{stdWeightPosition * h, stdWeightPosition * h, 1e-1, stdWeightPosition * h}
	// S = H P Hᵀ + R, the top-left block of P plus the measurement noise.
	var s [dimMeas][dimMeas]float64
	for i := range dimMeas {
		for j := range dimMeas {
			s[i][j] = k.Cov[i][j]
		}
		s[i][i] += r[i] * r[i]
	}
	l, ok := cholesky(s)
	if !ok {
		return false
	}
	// X = S⁻¹ (H P), 4×8; the gain is K = Xᵀ because P and S are symmetric.
	var x [dimMeas][dimState]float64
	copy(x[:], k.Cov[:dimMeas])
	cholSolve(&l, &x)
	var y [dimMeas]float64 // the innovation
	for i := range dimMeas {
		y[i] = z[i] - k.Mean[i]
	}
	var mean [dimState]float64
	for i := range dimState {
		mean[i] = k.Mean[i]
		for m := range dimMeas {
			mean[i] += x[m][i] * y[m]
		}
	}
	// P - K S Kᵀ = P - (P Hᵀ) X, symmetric: the upper triangle is computed and
	// mirrored, which also keeps rounding from making it drift asymmetric.
	var cov [dimState][dimState]float64
	for i := range dimState {
		for j := i; j < dimState; j++ {
			v := k.Cov[i][j]
			for m := range dimMeas {
				v -= k.Cov[i][m] * x[m][j]
			}
			cov[i][j], cov[j][i] = v, v
		}
	}
	for _, v := range mean {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	k.Mean, k.Cov = mean, cov
	return true
}

// cholesky factors a symmetric positive definite S = L Lᵀ.
func cholesky(s [dimMeas][dimMeas]float64) (l [dimMeas][dimMeas]float64, ok bool) {
	for i := range dimMeas {
		for j := 0; j <= i; j++ {
			v := s[i][j]
			for m := range j {
				v -= l[i][m] * l[j][m]
			}
			if i == j {
				if !(v > 0) || math.IsInf(v, 0) { // also rejects NaN
					return l, false
				}
				l[i][i] = math.Sqrt(v)
			} else {
				l[i][j] = v / l[j][j]
			}
		}
	}
	return l, true
}

// cholSolve solves L Lᵀ X = B for the 8 columns of B at once, in place.
func cholSolve(l *[dimMeas][dimMeas]float64, b *[dimMeas][dimState]float64) {
	var inv [dimMeas]float64
	for i := range dimMeas {
		inv[i] = 1 / l[i][i]
	}
	for i := range dimMeas { // L Y = B
		for m := range i {
			for j := range dimState {
				b[i][j] -= l[i][m] * b[m][j]
			}
		}
		for j := range dimState {
			b[i][j] *= inv[i]
		}
	}
	for i := dimMeas - 1; i >= 0; i-- { // Lᵀ X = Y
		for m := i + 1; m < dimMeas; m++ {
			for j := range dimState {
				b[i][j] -= l[m][i] * b[m][j]
			}
		}
		for j := range dimState {
			b[i][j] *= inv[i]
		}
	}
}
