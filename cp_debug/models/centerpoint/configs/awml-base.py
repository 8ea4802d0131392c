_base_ = ["./_base_/pillar_second_secfpn.py"]
cp_debug_description = "AWML CenterPoint base >= 2.5: 1020x1020 grid, 0.24 m pillars, x,y,z,t"
