// qstrs of the mps2-an386 port beyond those found in its sources (none)
